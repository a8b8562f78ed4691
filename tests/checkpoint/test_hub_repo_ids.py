"""``--model`` / ``from_pretrained`` take a Hugging Face repo id (``org/name``): the snapshot in the local
cache (``HF_HOME``) is used; offline (``HF_HUB_OFFLINE=1``) a repo id not in the cache is one clear line.
Each test builds a cache layout in tmp_path; nothing touches the network."""
import shutil

import numpy as np
import pytest

from xlstm_metal import build_graph, xLSTMRunner
from xlstm_metal.checkpoint import CheckpointError, config_to_spec, xLSTMConfig
from xlstm_metal.checkpoint.files import resolve_checkpoint
from xlstm_metal.cli import main

CONFIG = {"model_type": "xlstm", "embedding_dim": 32, "num_heads": 2, "num_blocks": 1, "vocab_size": 40,
          "ffn_round_up_to_multiple_of": 16, "chunk_size": 8, "eos_token_id": 2}
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """HF_HOME in tmp_path, offline, holding org/tiny-xlstm at refs/main (files under snapshots/<rev>/)."""
    home = tmp_path / "hf"
    repo = home / "hub" / "models--org--tiny-xlstm"
    snapshot = repo / "snapshots" / REVISION
    cfg = xLSTMConfig.from_dict(CONFIG)
    runner = xLSTMRunner(build_graph(config_to_spec(cfg)), config=cfg)
    runner.save_pretrained(tmp_path / "saved", config=dict(CONFIG))
    snapshot.parent.mkdir(parents=True)
    shutil.copytree(tmp_path / "saved", snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return runner, snapshot


def test_a_cached_repo_id_resolves_to_its_snapshot(hub):
    _, snapshot = hub
    assert resolve_checkpoint("org/tiny-xlstm") == snapshot


def test_from_pretrained_loads_a_cached_repo_id(hub):
    runner, _ = hub
    loaded = xLSTMRunner.from_pretrained("org/tiny-xlstm")
    x = np.array([[1, 5, 9, 3]])
    np.testing.assert_array_equal(np.array(loaded(x)[0]), np.array(runner(x)[0]))


def test_cli_generate_takes_a_repo_id(hub, capsys):
    code = main(["generate", "--model", "org/tiny-xlstm", "--prompt", "1,2,3", "--max-tokens", "3", "--quiet"])
    assert code == 0, capsys.readouterr().err


def test_offline_repo_id_not_in_the_cache_is_one_line(hub, capsys):
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint("org/not-downloaded")
    message = str(info.value)
    assert "\n" not in message and "org/not-downloaded" in message and "HF_HUB_OFFLINE" in message
    assert main(["generate", "--model", "org/not-downloaded", "--prompt", "1,2"]) != 0
    err = capsys.readouterr().err
    assert "org/not-downloaded" in err and "Traceback" not in err


def test_local_directories_win_and_missing_ones_are_named(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("saved").resolve() == tmp_path / "saved"
    with pytest.raises(CheckpointError, match="no checkpoint directory at ./missing"):
        resolve_checkpoint("./missing")


def test_online_a_repo_id_is_downloaded_into_the_cache_and_failures_are_one_line(hub, monkeypatch):
    """Online, the Hub client is asked (stubbed here: nothing touches the network) for the repo, into HF_HOME."""
    import huggingface_hub

    _, snapshot = hub
    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls = []

    def fake_download(repo_id, **kw):
        calls.append((repo_id, kw))
        if repo_id != "org/tiny-xlstm":
            raise OSError("404 Client Error.\n\nRepository Not Found for url: https://huggingface.co/api/models/org/absent")
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    assert resolve_checkpoint("org/tiny-xlstm@v1") == snapshot
    repo_id, kw = calls[0]
    assert (repo_id, kw["revision"], kw["local_files_only"]) == ("org/tiny-xlstm", "v1", False)
    assert kw["cache_dir"] == snapshot.parents[2]
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint("org/absent")
    assert "\n" not in str(info.value) and "org/absent" in str(info.value) and "404" in str(info.value)


def test_convert_reads_a_cached_repo_id_with_its_tokenizer_files(hub, tmp_path):
    from xlstm_metal.checkpoint.save import convert

    _, snapshot = hub
    (snapshot / "generation_config.json").write_text('{"eos_token_id": 2}')
    convert("org/tiny-xlstm", tmp_path / "bf16", dtype="bfloat16")
    assert (tmp_path / "bf16" / "generation_config.json").read_text() == '{"eos_token_id": 2}'
    assert xLSTMRunner.from_pretrained(tmp_path / "bf16").dtype.size == 2
