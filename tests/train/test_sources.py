"""Cleaning training text: generated tables and data blobs stay out, copies count once, held-out files are stable."""
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from xlstm_metal.cli import main
from xlstm_metal.train.sources import blob_reason, clean_sources, excluded, gather_sources, is_held_out, split_held_out

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
    src = clean_sources([("a.py", CODE), ("b.py", CODE.replace("read_config", "load")), ("c.py", variant)])
    assert src.names == ["a.py", "b.py"] and src.duplicates == 1


def test_cleaning_stops_reading_at_max_chars():
    read = []

    def named():
        for i in range(10):
            read.append(i)
            yield f"f{i}.py", CODE.replace("read_config", f"read_{i}")

    src = clean_sources(named(), max_chars=2 * len(CODE) + 1)
    assert len(src.texts) == 3 and read == [0, 1, 2]


def test_exclude_globs_match_the_path_or_the_file_name_and_those_files_are_not_read(tmp_path):
    assert excluded("/lib/pkg/tests/test_a.py", ["*/tests/*"]) and excluded("/x/y/msg_pb2.py", ["*_pb2.py"])
    assert not excluded("/lib/pkg/core.py", ["*/tests/*", "*_pb2.py"])
    read = []
    files = [tmp_path / "keep.py", tmp_path / "tests" / "t.py"]
    src = gather_sources(files, lambda f: read.append(f) or [CODE], exclude=["*/tests/*"])
    assert read == [files[0]] and src.left_out == [(str(files[1]), "--exclude")]


@settings(max_examples=examples(50), deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=60, unique=True),
       st.sampled_from([0.02, 0.1, 0.5]), st.randoms())
def test_held_out_files_depend_on_their_text_alone(texts, share, rnd):
    train, held = split_held_out(texts, share)
    assert held, "something is always held out"
    chosen = [is_held_out(t, share) for t in texts]
    if any(chosen) and not all(chosen):  # whole files, chosen by their text: the order of the data does not matter
        assert sorted(train + held) == sorted(texts)
        shuffled = rnd.sample(texts, len(texts))
        assert sorted(split_held_out(shuffled, share)[1]) == sorted(held)
    else:  # too few files: the tail of the characters
        assert "".join(train + held) == "".join(texts)


def test_a_few_files_fall_back_to_holding_out_the_last_characters():
    texts = ["a" * 600, "b" * 400]
    assert not any(is_held_out(t, 0.01) for t in texts)  # neither file is chosen by its text
    train, held = split_held_out(texts, 0.01)
    assert "".join(train) == "a" * 600 + "b" * 390 and held == ["b" * 10]


def test_about_the_share_of_many_files_is_held_out():
    rng = random.Random(0)
    texts = [f"def f{i}(x):\n    return x + {rng.random()}\n" for i in range(5000)]
    assert 0.015 < len(split_held_out(texts, 0.02)[1]) / 5000 < 0.025


def test_train_leaves_out_tables_and_copies_and_says_so(tmp_path, capsys):
    from train.test_training import cli_run_inputs

    spec, data = cli_run_inputs(tmp_path)
    (data / "cp1252.py").write_text(CODEC_TABLE)
    (data / "copy.py").write_text((data / "a.py").read_text())
    code = main(["train", str(spec), "--data", str(data), "--out", str(tmp_path / "m"), "--steps", "2",
                 "--batch-size", "2", "--seq-len", "8", "--exclude", "*/nothing/*"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 duplicate(s) dropped" in err and "1 generated table(s) or data blob(s) left out" in err
    assert "cp1252.py" in err


def test_data_that_is_all_tables_is_one_line_naming_keep_generated(tmp_path, capsys):
    from train.test_training import cli_run_inputs

    spec, data = cli_run_inputs(tmp_path)
    (data / "a.py").write_text(CODEC_TABLE)
    args = ["train", str(spec), "--data", str(data), "--steps", "1", "--batch-size", "2", "--seq-len", "8"]
    assert main(args + ["--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --data: every file was left out") and "--keep-generated" in err[-1]
    assert main(args + ["--out", str(tmp_path / "m2"), "--keep-generated"]) == 0
