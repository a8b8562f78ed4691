"""Cleaning training text: generated tables and data blobs stay out, copies count once, held-out files are stable."""
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from xlstm_metal.cli import main
from xlstm_metal.train.records import Record
from xlstm_metal.train.sources import blob_reason, clean_records, clean_sources, excluded, is_held_out, split_records

CODE = '''"""Helpers for reading configuration files."""
import os


def read_config(path, default=None):
    """The settings in ``path`` as a dict; ``default`` when it is missing."""
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return dict(line.split("=", 1) for line in f if "=" in line)


class Settings:
    def __init__(self, values):
        self.values = values  # 0x10 flags, kept as given

    def get(self, key, fallback=0):
        return self.values.get(key, fallback)
'''
CODEC_TABLE = "decoding_table = (\n" + "".join(
    f"    '\\x{i:02x}'     #  0x{i:02X} -> CONTROL CHARACTER\n" for i in range(256)) + ")\n"
HEX_MAP = "decoding_map.update({\n" + "".join(f"    0x{i:04x}: 0x{i + 0x80:04x},\n" for i in range(128)) + "})\n"
ENTITIES = "html5 = {\n" + "".join(f"    'name{i}': '\\u{i + 0xc0:04x}',\n" for i in range(100)) + "}\n"


def test_written_code_and_prose_are_kept():
    assert blob_reason(CODE) is None
    assert blob_reason("Install the package, then run the tests.\n\n" * 50) is None


def test_codec_tables_number_maps_and_literal_dicts_are_left_out():
    for table in (CODEC_TABLE, HEX_MAP, ENTITIES):
        assert "literals" in blob_reason('"""Generated table."""\nimport codecs\n\n' + table)


def test_a_code_file_with_a_short_constant_table_is_kept():
    small_table = "SIZES = {\n" + "".join(f"    'k{i}': {i},\n" for i in range(10)) + "}\n"
    assert blob_reason(CODE + small_table) is None


def test_a_file_mostly_of_numbers_is_left_out():
    numbers = "WEIGHTS = [" + ", ".join(str(i * 7 % 1000) for i in range(200)) + "]\n"
    assert blob_reason(CODE + "\n".join([numbers[k:k + 90] for k in range(0, len(numbers), 90)])) is not None


def test_very_long_lines_mark_a_blob():
    assert "characters" in blob_reason(CODE + "DATA = '" + "ab" * 2000 + "'\n")
    assert "300" in blob_reason("x = 1\n" * 10 + ("y = '" + "q" * 400 + "'\n") * 3)


def test_empty_files_are_left_out():
    assert blob_reason("") == "empty"


def test_copies_that_differ_in_whitespace_and_comments_count_once():
    variant = "# Copyright 2001\n" + CODE.replace("    ", "\t").replace("\n\n", "\n\n\n") + "   \n"
    other = CODE.replace("read_config", "load")
    src = clean_sources([("a.py", CODE), ("b.py", other), ("c.py", variant)])
    assert src.kept == [0, 1] and src.duplicates == 1 and src.characters == len(CODE) + len(other)


def test_conversations_are_kept_as_they_are_and_text_records_are_cleaned():
    chat = Record("d.jsonl:1", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "1"}])
    records = [Record("a.py", text=CODE), chat, Record("t.py", text=CODEC_TABLE), Record("b.py", text=CODE)]
    kept, src = clean_records(records)
    assert kept == records[:2] and src.left_out[0][0] == "t.py" and src.duplicates == 1


def test_exclude_globs_match_the_path_or_the_file_name():
    assert excluded("/lib/pkg/tests/test_a.py", ["*/tests/*"]) and excluded("/x/y/msg_pb2.py", ["*_pb2.py"])
    assert not excluded("/lib/pkg/core.py", ["*/tests/*", "*_pb2.py"])


@settings(max_examples=examples(50), deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=60, unique=True),
       st.sampled_from([0.02, 0.1, 0.5]), st.randoms())
def test_held_out_records_depend_on_their_text_alone(texts, share, rnd):
    records = [Record(f"f{i}", text=t) for i, t in enumerate(texts)]
    split = split_records(records, share)
    chosen = [is_held_out(t, share) for t in texts]
    if not any(chosen) or all(chosen):
        assert split is None  # too few to choose from: train holds out the tail of the tokens
        return
    train, held = split
    assert held == [r for r, c in zip(records, chosen) if c] and train == [r for r, c in zip(records, chosen) if not c]
    shuffled = rnd.sample(records, len(records))
    assert sorted(r.where for r in split_records(shuffled, share)[1]) == sorted(r.where for r in held)


def test_about_the_share_of_many_files_is_held_out():
    rng = random.Random(0)
    records = [Record(f"f{i}", text=f"def f{i}(x):\n    return x + {rng.random()}\n") for i in range(5000)]
    assert 0.015 < len(split_records(records, 0.02)[1]) / 5000 < 0.025


def test_train_leaves_out_tables_and_copies_and_says_so(tmp_path, capsys):
    from test_training import cli_run_inputs

    spec, data = cli_run_inputs(tmp_path)
    (data / "cp1252.py").write_text(CODEC_TABLE)
    (data / "copy.py").write_text((data / "a.py").read_text())
    (data / "vendor").mkdir()
    (data / "vendor" / "blob.txt").write_bytes(b"\xff\xfe not text" * 10)  # excluded files are not even read
    code = main(["train", str(spec), "--data", str(data), "--out", str(tmp_path / "m"), "--steps", "2",
                 "--batch-size", "2", "--seq-len", "8", "--exclude", "*/vendor/*"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 duplicate(s) dropped" in err and "1 generated table(s) or data blob(s) left out" in err
    assert "cp1252.py" in err and "1 file(s) matched --exclude" in err and "not readable" not in err


def test_data_that_is_all_tables_is_one_line_naming_keep_generated(tmp_path, capsys):
    from test_training import cli_run_inputs

    spec, data = cli_run_inputs(tmp_path)
    (data / "a.py").write_text(CODEC_TABLE)
    args = ["train", str(spec), "--data", str(data), "--steps", "1", "--batch-size", "2", "--seq-len", "8"]
    assert main(args + ["--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --data: every file was left out") and "--keep-generated" in err[-1]
    assert main(args + ["--out", str(tmp_path / "m2"), "--keep-generated"]) == 0
