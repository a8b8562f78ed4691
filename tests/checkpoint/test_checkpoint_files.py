"""Checkpoint directories as files: swapped in whole (the old one restored when the swap fails), read as one
version while a writer replaces them, and never read outside themselves; damaged tensors are named."""
import json
import os
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from xlstm_metal import xLSTMRunner
from xlstm_metal.checkpoint import CheckpointError
from xlstm_metal.checkpoint.load import Checkpoint

from test_checkpoint import CONFIG, X, make_checkpoint


def tree(root):
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_overwrite_restores_the_old_directory_when_the_final_rename_fails(tmp_path, monkeypatch):
    make_checkpoint(tmp_path / "c", seed=0)
    newer = make_checkpoint(tmp_path / "newer", seed=1)
    before = tree(tmp_path)
    real = os.rename

    def failing(src, dst):
        if Path(dst).name == "c" and ".old-" not in str(src):  # the new version taking the old one's place
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(OSError, match="No space"):
        newer.save_pretrained(tmp_path / "c", config=dict(CONFIG), overwrite=True)
    assert tree(tmp_path) == before  # the old version back in place, nothing left over


def test_a_stale_old_directory_never_makes_a_save_fail(tmp_path):
    runner = make_checkpoint(tmp_path / "c")
    stale = tmp_path / f".c.old-{os.getpid()}"  # the name a previous save of this process used
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"x")
    for _ in range(2):
        runner.save_pretrained(tmp_path / "c", config=dict(CONFIG), overwrite=True)
    xLSTMRunner.from_pretrained(tmp_path / "c")


def test_a_reader_sees_one_version_while_a_writer_swaps_the_directory(tmp_path, monkeypatch):
    make_checkpoint(tmp_path / "c", seed=0)
    newer_config = dict(CONFIG, vocab_size=98)
    newer = make_checkpoint(tmp_path / "newer", config=newer_config, seed=1)
    real_read, swapped = Checkpoint.read, []

    def read_after_a_swap(self, *a, **kw):
        if not swapped:  # another process replaces the checkpoint after config.json was read, before the weights
            swapped.append(True)
            newer.save_pretrained(tmp_path / "c", config=dict(newer_config), overwrite=True)
        return real_read(self, *a, **kw)

    monkeypatch.setattr(Checkpoint, "read", read_after_a_swap)
    loaded = xLSTMRunner.from_pretrained(tmp_path / "c")
    assert loaded.config.vocab_size == 98
    np.testing.assert_array_equal(np.array(loaded(X)[0]), np.array(newer(X)[0]))


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors",
                                   "C:\\x.safetensors", 7, ""])
def test_index_entries_outside_the_directory_are_refused(tmp_path, shard):
    make_checkpoint(tmp_path / "one").save_pretrained(tmp_path / "c", config=dict(CONFIG), max_shard_bytes=20_000)
    (tmp_path / "outside.safetensors").write_bytes((tmp_path / "one" / "model.safetensors").read_bytes())
    index = tmp_path / "c" / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["lm_head.weight"] = shard
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="'lm_head.weight'") as info:
        xLSTMRunner.from_pretrained(tmp_path / "c")
    assert str(index) in str(info.value)


@pytest.mark.parametrize("weight_map, fragment", [
    ([], "needs a non-empty 'weight_map' object"),
    ({}, "needs a non-empty 'weight_map' object"),
    (None, "needs a non-empty 'weight_map' object"),
])
def test_malformed_index_maps_are_one_line(tmp_path, weight_map, fragment):
    make_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match=fragment):
        xLSTMRunner.from_pretrained(tmp_path / "c")


def resave(directory, change):
    f = directory / "model.safetensors"
    w = dict(mx.load(str(f)))
    change(w)
    mx.save_safetensors(str(f), w)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_inf_weights_are_refused(tmp_path, value):
    make_checkpoint(tmp_path / "c")
    resave(tmp_path / "c", lambda w: w.__setitem__("lm_head.weight", w["lm_head.weight"] * 0 + value))
    with pytest.raises(CheckpointError, match="model.safetensors tensor 'lm_head.weight' holds NaN or Inf"):
        xLSTMRunner.from_pretrained(tmp_path / "c")


def test_an_integer_tensor_in_a_float_slot_is_refused(tmp_path):
    make_checkpoint(tmp_path / "c")
    resave(tmp_path / "c", lambda w: w.__setitem__("lm_head.weight", w["lm_head.weight"].astype(mx.int32)))
    with pytest.raises(CheckpointError, match="'lm_head.weight' is I32, but this slot needs a float tensor"):
        xLSTMRunner.from_pretrained(tmp_path / "c")


def test_float64_tensors_are_called_what_they_are(tmp_path):
    from safetensors.numpy import save_file

    make_checkpoint(tmp_path / "c")
    f = tmp_path / "c" / "model.safetensors"
    w = {k: np.array(v).astype(np.float64) for k, v in mx.load(str(f)).items()}
    save_file(w, str(f))
    with pytest.raises(CheckpointError) as info:
        xLSTMRunner.from_pretrained(tmp_path / "c")
    msg = str(info.value)
    assert "float64 (F64), which MLX cannot load; convert" in msg and "re-download" not in msg


@pytest.mark.parametrize("entry, fragment", [
    ({"dtype": "F32", "shape": [2]}, "corrupt 'data_offsets' None"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}, "do not hold a F32 tensor of shape [2]"),
    ({"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}, "corrupt 'shape'"),
    ({"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}, "unknown dtype 'Q9'"),
    ("text", "header entry must be an object"),
])
def test_malformed_safetensors_headers_name_file_and_entry(tmp_path, entry, fragment):
    make_checkpoint(tmp_path / "c")
    f = tmp_path / "c" / "model.safetensors"
    data = f.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["lm_head.weight"] = entry
    raw = json.dumps(header).encode()
    f.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])
    with pytest.raises(CheckpointError) as info:
        xLSTMRunner.from_pretrained(tmp_path / "c")
    assert fragment in str(info.value) and f"{f} tensor 'lm_head.weight'" in str(info.value)


def test_a_non_utf8_config_names_the_file(tmp_path):
    make_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_bytes(b'{"name": "\xff\xfe"}')
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'c' / 'config.json'} is not UTF-8"):
        xLSTMRunner.from_pretrained(tmp_path / "c")


@pytest.mark.parametrize("field, value, fragment", [
    ("gate_soft_cap", "15", "must be a finite number"),
    ("num_heads", 2.0, "must be an integer"),
    ("use_bias", "false", "must be true or false"),
    ("eos_token_id", [2, "3"], "must be an integer or a list of integers"),
    ("norm_eps", float("nan"), "must be a finite number"),
    ("quantization", {"bits": 4}, "expected {'bits'"),
])
def test_config_values_of_the_wrong_type_name_file_and_field(tmp_path, field, value, fragment):
    from xlstm_metal.checkpoint import ConfigError

    make_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text(json.dumps(dict(CONFIG, **{field: value})))
    with pytest.raises(ConfigError) as info:
        xLSTMRunner.from_pretrained(tmp_path / "c")
    assert f"{tmp_path / 'c' / 'config.json'} field '{field}'" in str(info.value) and fragment in str(info.value)


def test_a_custom_spec_checkpoint_with_a_bad_quantization_names_the_field(tmp_path):
    from xlstm_metal.checkpoint import ConfigError

    xLSTMRunner.from_spec("xlstm_tiny", seed=0).save_pretrained(tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    (tmp_path / "c" / "config.json").write_text(json.dumps(dict(cfg, quantization={"bits": 4})))
    with pytest.raises(ConfigError, match="config.json field 'quantization'"):
        xLSTMRunner.from_pretrained(tmp_path / "c")
