"""What a training step holds and what its first step costs: per-block activation checkpointing gives the same
gradients with a lower peak, and on the CPU the step is not compiled (no generated C++ built at first use)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.plan import make_plan
from xlstm_metal.runtime import execute
from xlstm_metal.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
MAD = {"name": "mad-4", "dims": {"d": 64, "vocab": 64},
       "nodes": [{"name": "emb", "type": "embedding", "inputs": ["tokens"], "num_embeddings": "vocab", "dim": "d"},
                 {"repeat": 4, "name": "blocks.{i}", "inputs": {"x": "emb"}, "output": "out", "nodes": [
                     {"name": "norm", "type": "rms_norm", "inputs": ["x"]},
                     {"name": "mlstm", "type": "mlstm", "inputs": ["norm"], "num_heads": 4, "chunk_size": 16},
                     {"name": "res", "type": "add", "inputs": ["x", "mlstm"]},
                     {"name": "norm_ffn", "type": "rms_norm", "inputs": ["res"]},
                     {"name": "ffn", "type": "swiglu", "inputs": ["norm_ffn"], "proj_factor": 2.667, "round_up_to": 64},
                     {"name": "out", "type": "add", "inputs": ["res", "ffn"]}]},
                 {"name": "lm_head", "type": "lm_head", "inputs": ["blocks"], "vocab_size": "vocab"}],
       "outputs": ["lm_head"]}


def loss_and_grads(checkpoint: bool):
    runner = xLSTMRunner.from_spec(MAD, seed=0)
    plan = make_plan(runner.graph, 128, segment_len=None, training=True)
    x = mx.array(np.random.default_rng(0).integers(0, 64, (8, 128)).astype(np.int32))

    def loss(model):
        logits = execute(runner.graph, plan, x, training=True, checkpoint=checkpoint)[0]["lm_head"]
        return nn.losses.cross_entropy(logits[:, :-1], x[:, 1:], reduction="mean")

    mx.eval(runner.model.parameters(), x)
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    value, grads = nn.value_and_grad(runner.model, loss)(runner.model)
    mx.eval(value, grads)
    return float(value), dict(tree_flatten(grads)), mx.get_peak_memory() - base


def test_checkpointed_blocks_give_the_same_gradients_and_hold_less():
    loss, grads, peak = loss_and_grads(checkpoint=False)
    loss_ck, grads_ck, peak_ck = loss_and_grads(checkpoint=True)
    assert loss_ck == loss
    assert grads.keys() == grads_ck.keys() and len(grads) > 10
    for name, g in grads.items():
        np.testing.assert_allclose(np.array(grads_ck[name]), np.array(g), rtol=1e-5, atol=1e-7, err_msg=name)
    assert peak_ck < 0.85 * peak


def test_the_train_command_passes_checkpoint_blocks_to_the_config():
    from xlstm_metal.cli import build_parser

    parse = lambda *extra: build_parser(["train"]).parse_args(["train", "s.yaml", "--data", "d", "--out", "o", *extra])  # noqa
    assert parse().checkpoint_blocks is False and TrainConfig().checkpoint_blocks is False
    assert parse("--checkpoint-blocks").checkpoint_blocks is True


def test_a_cpu_training_step_builds_no_compiled_kernels(tmp_path):
    """mx.compile's fusions are C++ that the system compiler builds at first use (into $TMPDIR/mlx/<version>/cpu):
    tens of seconds for a model's step on a cold cache, for no faster step on the CPU. A fresh process with an
    empty cache directory trains two steps and leaves that directory empty."""
    script = textwrap.dedent(f"""
        import numpy as np, tempfile
        from xlstm_metal import xLSTMRunner
        from xlstm_metal.train import TokenBatches, TrainConfig, Trainer
        spec = {MAD!r}
        runner = xLSTMRunner.from_spec(spec, seed=0)
        data = np.random.default_rng(0).integers(0, 64, 5000).astype(np.int32)
        cfg = TrainConfig(steps=2, batch_size=2, seq_len=32, warmup=1, eval_every=10, save_every=10)
        Trainer(runner, TokenBatches(data, 2, 32), cfg, tempfile.mkdtemp(), progress=False).train(resume=False,
                                                                                                   stop_after=2)
        print("trained")
    """)
    env = dict(os.environ, TMPDIR=str(tmp_path), XLSTM_METAL_BLAS="bundled")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0 and "trained" in done.stdout, done.stderr[-2000:]
    built = [p.name for p in tmp_path.rglob("*") if p.is_file() and "mlx" in p.parts]
    assert built == [], f"{len(built)} generated kernel files, e.g. {built[:3]}"


def test_checkpointed_blocks_refuse_lora_dropout_whose_masks_the_recomputation_would_redraw(tmp_path, capsys):
    from xlstm_metal.cli import main

    code = main(["train", "--from", str(tmp_path / "base"), "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--lora-rank", "4", "--lora-dropout", "0.1", "--checkpoint-blocks"])
    err = capsys.readouterr().err
    assert code != 0 and "--checkpoint-blocks" in err and "--lora-dropout 0" in err and "Traceback" not in err
