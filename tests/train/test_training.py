"""Training: loss goes down, gradients of chunkwise equal those of step decoding, checkpoints load, resume is exact."""
import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.plan import make_plan
from xlstm_metal.runtime import execute
from xlstm_metal.train import TokenBatches, TrainConfig, Trainer

SPEC = {
    "name": "train-test", "dims": {"d": 32, "vocab": 40},
    "nodes": [
        {"name": "backbone.embeddings", "type": "embedding", "inputs": ["tokens"], "num_embeddings": "vocab", "dim": "d"},
        {"repeat": 2, "name": "backbone.blocks.{i}", "inputs": {"x": "backbone.embeddings"}, "nodes": [
            {"name": "norm", "type": "rms_norm", "inputs": ["x"]},
            {"name": "mlstm_layer", "type": "mlstm", "inputs": ["norm"], "num_heads": 2, "chunk_size": 4},
            {"name": "ffn", "type": "swiglu", "inputs": ["norm"], "proj_factor": 2.0, "round_up_to": 8},
            {"name": "out", "type": "add", "inputs": ["x", "mlstm_layer", "ffn"]}]},
        {"name": "lm_head", "type": "lm_head", "inputs": ["backbone.blocks"], "vocab_size": "vocab"}],
    "outputs": ["lm_head"],
}
DATA = np.tile(np.array([1, 5, 9, 2, 7, 3, 8, 4, 6, 0] * 3 + list(range(10, 40)), dtype=np.int32), 50)


def trainer(out, steps, **kw):
    runner = xLSTMRunner.from_spec(SPEC, seed=0)
    cfg = TrainConfig(steps=steps, batch_size=4, seq_len=16, lr=1e-2, warmup=3, save_every=kw.pop("save_every", 5),
                      log_every=5, eval_every=5, eval_batches=1, **kw)
    return Trainer(runner, TokenBatches(DATA, 4, 16, seed=1), cfg, out, val_batches=TokenBatches(DATA, 4, 16, seed=2),
                   progress=False)


def params(runner):
    return {k: np.array(v) for k, v in tree_flatten(runner.model.parameters())}


def test_loss_goes_down_and_the_checkpoint_loads(tmp_path):
    t = trainer(tmp_path / "run", steps=30)
    log = t.train()
    assert np.mean(log.losses[-5:]) < 0.5 * np.mean(log.losses[:5])
    assert len(log.val) == 6 and log.val[-1][1] < log.val[0][1]
    for name in ("model.safetensors", "config.json", "wiring_spec.yaml", "trainer_state.safetensors", "trainer.json", "loss.svg"):
        assert (tmp_path / "run" / name).exists(), name
    assert (tmp_path / "run" / "loss.svg").read_text().startswith("<svg")
    loaded = xLSTMRunner.from_pretrained(tmp_path / "run")
    x = mx.array(DATA[None, :20])
    np.testing.assert_array_equal(np.array(loaded(x)[0]), np.array(t.runner(x)[0]))


def test_interrupted_and_resumed_training_equals_an_uninterrupted_run(tmp_path):
    whole = trainer(tmp_path / "whole", steps=12, save_every=4)
    whole.train()
    first = trainer(tmp_path / "split", steps=12, save_every=4)
    first.train(stop_after=8)  # "killed" after the checkpoint at step 8
    assert json.loads((tmp_path / "split" / "trainer.json").read_text())["step"] == 8
    second = trainer(tmp_path / "split", steps=12, save_every=4)  # a new process would start like this
    second.train()
    assert second.step == 12
    a, b = params(whole.runner), params(second.runner)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert second.log.losses[:8] == pytest.approx(whole.log.losses[:8])


def test_chunkwise_gradients_equal_step_by_step_gradients():
    runner = xLSTMRunner.from_spec(SPEC, seed=3)
    x = mx.array(DATA[None, 3:22])
    y = mx.array(DATA[None, 4:23])
    plan = make_plan(runner.graph, x.shape[1])
    assert {s.form for s in plan.kernel_steps()} == {"chunkwise"}

    def chunkwise_loss(model):
        outs, _ = execute(runner.graph, plan, x, training=True)
        return nn.losses.cross_entropy(outs["lm_head"], y, reduction="mean")

    step_plan = make_plan(runner.graph, 1)

    def step_loss(model):
        state, logits = None, []
        for t in range(x.shape[1]):
            outs, state = execute(runner.graph, step_plan, x[:, t:t + 1], state, training=True)
            logits.append(outs["lm_head"])
        return nn.losses.cross_entropy(mx.concatenate(logits, axis=1), y, reduction="mean")

    l1, g1 = nn.value_and_grad(runner.model, chunkwise_loss)(runner.model)
    l2, g2 = nn.value_and_grad(runner.model, step_loss)(runner.model)
    assert abs(float(l1.item()) - float(l2.item())) < 1e-5
    for (k, a), (_, b) in zip(tree_flatten(g1), tree_flatten(g2)):
        a, b = np.array(a), np.array(b)
        assert np.all(np.isfinite(a))
        assert np.abs(a - b).max() <= 1e-4 * max(1e-3, np.abs(b).max()) + 1e-7, k


def cli_run_inputs(tmp_path):
    """A spec file (SPEC at width 32, vocab 300) and a data directory with one small Python file, for `train`."""
    import yaml

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.py").write_text("def add(a, b):\n    return a + b\n\n" * 200)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(dict(SPEC, dims={"d": 32, "vocab": 300})))
    return spec, data


def test_train_cli_trains_a_tokenizer_and_writes_a_loadable_model(tmp_path, capsys):
    from xlstm_metal.cli import main

    spec, data = cli_run_inputs(tmp_path)
    code = main(["train", str(spec), "--data", str(data), "--out", str(tmp_path / "m"), "--steps", "6", "--batch-size", "2",
                 "--seq-len", "16", "--warmup", "2", "--save-every", "3", "--eval-every", "3"])
    assert code == 0
    assert "done: step 6" in capsys.readouterr().err
    r = xLSTMRunner.from_pretrained(tmp_path / "m")
    assert r.tokenizer is not None and r.eos_token_ids == {0}
    assert isinstance(r.generate("def", max_tokens=5), str)


def test_progress_is_plain_lines_when_not_a_terminal(tmp_path, capsys):
    t = trainer(tmp_path / "run", steps=10)
    t.progress = True
    t.train()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["5/10", "10/10"] and all(" loss " in ln for ln in lines)


class StopAt(TokenBatches):
    """Batches that press Ctrl-C when step ``stop`` is asked for."""

    def __init__(self, stop, *args, **kw):
        super().__init__(*args, **kw)
        self.stop = stop

    def batch(self, step):
        if step == self.stop:
            raise KeyboardInterrupt
        return super().batch(step)


@pytest.mark.parametrize("stop,hint", [(7, "interrupted at step 7: {out} holds step 5; running the same command "
                                            "resumes there"),
                                       (3, "interrupted at step 3, before the first checkpoint (step 5, "
                                           "--save-every): running the same command starts again at step 0")])
def test_ctrl_c_says_where_the_run_will_resume(tmp_path, capsys, stop, hint):
    t = trainer(tmp_path / "run", steps=12)
    t.batches = StopAt(stop, DATA, 4, 16, seed=1)
    t.progress = True
    with pytest.raises(KeyboardInterrupt):
        t.train()
    assert hint.format(out=tmp_path / "run") in capsys.readouterr().err


def test_train_cli_refuses_a_tokenizer_larger_than_the_spec(tmp_path, capsys):
    from bpe import byte_level_bpe

    from xlstm_metal.cli import main

    tok = byte_level_bpe(["def add(a, b): return a + b"] * 20)
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "a.py").write_text("x = 1\n" * 100)
    import yaml

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    code = main(["train", str(spec), "--data", str(tmp_path / "a.py"), "--out", str(tmp_path / "m"),
                 "--tokenizer", str(tmp_path / "tokenizer.json"), "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 1 and f"the tokenizer has {tok.get_vocab_size()} tokens but the spec 'train-test' reads 40" in err
    assert "Traceback" not in err and not (tmp_path / "m").exists()


def test_a_run_already_at_its_steps_trains_nothing_and_says_so(tmp_path, capsys):
    from xlstm_metal.cli import main

    spec, data = cli_run_inputs(tmp_path)
    args = ["train", str(spec), "--data", str(data), "--out", str(tmp_path / "m"), "--batch-size", "2",
            "--seq-len", "16", "--save-every", "3"]
    assert main(args + ["--steps", "3"]) == 0
    capsys.readouterr()
    assert main(args + ["--steps", "3"]) == 0
    err = capsys.readouterr().err
    assert "nothing to train" in err and "already at step 3" in err and "done:" not in err
