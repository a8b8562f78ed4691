"""Every file reader against damaged files: truncations, bit flips, random bytes and wrong JSON values in a
checkpoint's safetensors shards, index, config.json and tokenizer files, and in state files. A reader either
loads or raises our one-line ``InputError`` naming the file: no other exception, no crash, and nothing on disk
changes (readers write nothing, inside the target or outside it)."""
import json
import shutil
import tempfile
from pathlib import Path

import mlx.core as mx
import pytest
from budget import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers

from xlstm_metal import State, build_graph, xLSTMRunner
from xlstm_metal.checkpoint import config_to_spec, xLSTMConfig
from xlstm_metal.errors import InputError

CONFIG = {"embedding_dim": 32, "num_heads": 2, "num_blocks": 1, "vocab_size": 40, "chunk_size": 8,
          "ffn_round_up_to_multiple_of": 16, "eos_token_id": 0}
FUZZ = settings(max_examples=examples(25, 2000))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A sharded checkpoint with an index and a tokenizer, and a state file of its model."""
    root = tmp_path_factory.mktemp("pristine")
    cfg = xLSTMConfig.from_dict(CONFIG)
    mx.random.seed(0)
    runner = xLSTMRunner(build_graph(config_to_spec(cfg)), config=cfg)
    runner.save_pretrained(root / "ckpt", config=dict(CONFIG), max_shard_bytes=8_000)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<eos>", "[UNK]", "def", "x", "y"])},
                                     unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(root / "ckpt" / "tokenizer.json"))
    (root / "ckpt" / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<eos>", "add_bos_token": False}))
    runner(mx.array([[1, 2, 3]]))[1].save(root / "state.safetensors")
    return root


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


# how a file gets damaged: cut short, bits flipped, bytes overwritten or inserted, or replaced by noise
DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=8)),
    st.tuples(st.just("overwrite"), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=16))),
    st.tuples(st.just("insert"), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=16))),
    st.tuples(st.just("noise"), st.binary(max_size=256)),
)


def damage(data: bytes, how) -> bytes:
    kind, arg = how
    at = lambda f: min(int(f * len(data)), max(len(data) - 1, 0))  # noqa: E731
    if kind == "truncate":
        return data[:at(arg)]
    if kind == "flip":
        out = bytearray(data)
        for f, bit in arg:
            if out:
                out[at(f)] ^= 1 << bit
        return bytes(out)
    if kind == "overwrite":
        return data[:at(arg[0])] + arg[1] + data[at(arg[0]) + len(arg[1]):]
    if kind == "insert":
        return data[:at(arg[0])] + arg[1] + data[at(arg[0]):]
    return arg


def only_our_errors(root: Path, read) -> None:
    """``read()`` succeeds or raises a one-line InputError; no file under ``root`` changes."""
    before = snapshot(root)
    try:
        read()
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)
    assert snapshot(root) == before


def a_copy(pristine: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    shutil.copytree(pristine, root, dirs_exist_ok=True)
    return root


def ckpt_file(pristine, pick):
    names = sorted(p.name for p in (pristine / "ckpt").iterdir())
    return [n for n in names if pick(n)]


@pytest.mark.parametrize("which", ["shard", "index", "config", "tokenizer", "tokenizer_config"])
@FUZZ
@given(how=DAMAGE, pick=st.integers(0, 100))
def test_damaged_checkpoint_files(pristine, which, how, pick):
    chooser = {"shard": lambda n: n.endswith(".safetensors"), "index": lambda n: n.endswith(".index.json"),
               "config": lambda n: n == "config.json", "tokenizer": lambda n: n == "tokenizer.json",
               "tokenizer_config": lambda n: n == "tokenizer_config.json"}[which]
    files = ckpt_file(pristine, chooser)
    root = a_copy(pristine)
    try:
        target = root / "ckpt" / files[pick % len(files)]
        target.write_bytes(damage(target.read_bytes(), how))
        only_our_errors(root, lambda: xLSTMRunner.from_pretrained(root / "ckpt", progress=False))
    finally:
        shutil.rmtree(root)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=True)
                           | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


@pytest.mark.parametrize("which", ["config.json", "model.safetensors.index.json", "tokenizer_config.json"])
@FUZZ
@given(data=st.data())
def test_json_files_with_values_of_the_wrong_kind(pristine, which, data):
    root = a_copy(pristine)
    try:
        target = root / "ckpt" / which
        content = json.loads(target.read_text())
        inner = content["weight_map"] if which.endswith("index.json") and data.draw(st.booleans()) else content
        key = data.draw(st.sampled_from(sorted(inner)))
        inner[key] = data.draw(JSON_VALUES)
        target.write_text(json.dumps(content))
        only_our_errors(root, lambda: xLSTMRunner.from_pretrained(root / "ckpt", progress=False))
    finally:
        shutil.rmtree(root)


@FUZZ
@given(how=DAMAGE)
def test_damaged_state_files(pristine, how):
    graph = build_graph(config_to_spec(xLSTMConfig.from_dict(CONFIG)))
    root = a_copy(pristine)
    try:
        target = root / "state.safetensors"
        target.write_bytes(damage(target.read_bytes(), how))
        only_our_errors(root, lambda: State.load(target, graph=graph))
    finally:
        shutil.rmtree(root)
