"""2 and 3 local ranks (ring backend over loopback) compute what one process computes."""
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).parent / "worker.py"
LAUNCH = shutil.which("mlx.launch") or str(Path(sys.executable).parent / "mlx.launch")
pytestmark = pytest.mark.skipif(not Path(LAUNCH).exists(), reason="mlx.launch is not installed")


def launch(n, *args, timeout=240):
    port = random.randint(20000, 40000)  # loopback only; a random base avoids clashes between runs
    cmd = [LAUNCH, "-n", str(n), "--backend", "ring", "--starting-port", str(port), sys.executable, str(WORKER), *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def alone(*args):
    res = subprocess.run([sys.executable, str(WORKER), *map(str, args)], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "tp.npz"
    alone("tp", "xlstm_tiny", out)
    return np.load(out)


@pytest.mark.parametrize("ranks", [2, 3])  # 3 ranks split 4 heads 2/1/1: uneven
def test_head_parallel_inference_equals_one_process(ranks, reference, tmp_path):
    out = tmp_path / "tp.npz"
    launch(ranks, "tp", "xlstm_tiny", out)
    got = np.load(out)
    np.testing.assert_array_equal(got["tokens"], reference["tokens"])
    scale = np.abs(reference["logits"]).max()
    assert np.abs(got["logits"] - reference["logits"]).max() <= 1e-5 * max(1, scale)
    for k in [k for k in reference.files if k.startswith("state_")]:
        assert got[k].shape == reference[k].shape
        assert np.abs(got[k] - reference[k]).max() <= 1e-5 * max(1, np.abs(reference[k]).max())
    plan = str(got["plan"])
    assert "owner" in plan and "rank 0/" in plan and "heads 0-" in plan and "replicated" in plan


def test_data_parallel_training_equals_one_process_with_the_global_batch(tmp_path):
    alone("dp", tmp_path / "one.npz", 4, 4)  # one process, batch 4
    launch(2, "dp", tmp_path / "two.npz", 4, 2)  # two ranks, 2 each
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert set(a.files) == set(b.files)
    for k in a.files:
        # Adam divides by sqrt(v): summation-order differences of ~1e-7 in near-zero gradients move a
        # weight by up to ~1e-6; 1e-5 absolute is 0.1% of one step at lr 1e-2.
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_each_rank_loads_only_its_shard_of_a_checkpoint(tmp_path):
    from xlstm_metal import xLSTMRunner

    xLSTMRunner.from_spec("xlstm_tiny", seed=4).save_pretrained(tmp_path / "ckpt")
    alone("load", tmp_path / "ckpt", tmp_path / "one.npz")
    launch(2, "load", tmp_path / "ckpt", tmp_path / "two.npz")
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert int(a["q_rows"]) == 64 and int(b["q_rows"]) == 32  # rank 0 holds half of the q rows
    assert np.abs(a["logits"] - b["logits"]).max() <= 1e-5 * max(1, np.abs(a["logits"]).max())


def test_distributed_benchmark_runs_and_checks_itself(tmp_path):
    bench = Path(__file__).parent.parent.parent / "benchmarks" / "bench_distributed.py"
    port = random.randint(20000, 40000)
    res = subprocess.run([LAUNCH, "-n", "2", "--backend", "ring", "--starting-port", str(port), sys.executable, str(bench),
                          "--check", "--prefill", "32", "--decode-steps", "2", "--out", str(tmp_path / "b.json")],
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    data = json.loads((tmp_path / "b.json").read_text())
    assert data["ranks"] == 2 and data["max_logit_diff_vs_unsharded"] < 1e-4 and data["decode_tok_s"] > 0
