"""LoRA: adapters train while the (possibly quantized) base stays frozen, learn, save on their own, resume exactly,
and merge into the base weights (re-quantized or not) with the logits of the unfused model."""
import json

import mlx.core as mx
import numpy as np
import pytest
from budget import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from mlx.utils import tree_flatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.errors import InputError
from xlstm_metal.train import TokenBatches, TrainConfig, Trainer
from xlstm_metal.train.adapters import (AdapterError, adapter_weights, fuse_adapters, load_adapters,
                                        save_adapters)
from xlstm_metal.train.lora import LoRAConfig, LoRAError, apply_lora, target_names

from test_training import DATA, SPEC

SHIPPED = "xlstm_metal/default_model"
X = mx.array(DATA[None, :24])


def base_dir(tmp_path, quantized: bool) -> str:
    """The test spec with trained-looking (random) weights saved as a checkpoint, 8-bit quantized or float."""
    runner = xLSTMRunner.from_spec(SPEC, seed=3)
    if quantized:
        runner.quantize(bits=8, group_size=32)
    return str(runner.save_pretrained(tmp_path / ("q" if quantized else "f")))


def with_random_adapters(path, cfg: LoRAConfig, out):
    """The checkpoint at ``path`` with adapters whose B is not zero (a fresh adapter is a no-op), saved to ``out``."""
    runner = xLSTMRunner.from_pretrained(path)
    apply_lora(runner.model, runner.graph, cfg)
    mx.random.seed(7)
    runner.model.update(tree_unflatten_b(runner.model))
    save_adapters(out, runner.model, cfg, str(path))
    return runner


def tree_unflatten_b(model):
    from mlx.utils import tree_unflatten

    return tree_unflatten([(k, mx.random.normal(v.shape) * 0.05) for k, v in adapter_weights(model).items()
                           if k.endswith("lora_b")])


def test_targets_are_the_blocks_projections_and_the_pieces_of_merged_ones():
    graph = xLSTMRunner.from_spec(SPEC).graph
    assert target_names(graph) == sorted(["proj_in", "out_proj", "proj_up_gate_z", "proj_down", "q", "k", "v",
                                          "ogate_preact", "igate_preact", "fgate_preact", "proj_up_gate", "proj_up"])


def test_an_unknown_target_or_too_many_layers_is_one_line_naming_the_valid_ones():
    runner = xLSTMRunner.from_spec(SPEC)
    with pytest.raises(LoRAError, match=r"unknown projection\(s\) query; valid: fgate_preact, igate_preact, k, ") as e:
        apply_lora(runner.model, runner.graph, LoRAConfig(keys=["q", "query"]))
    assert "\n" not in str(e.value)
    with pytest.raises(LoRAError, match="--lora-layers 3: the model has 2 blocks"):
        apply_lora(runner.model, runner.graph, LoRAConfig(num_layers=3))


def test_only_adapters_train_and_the_optimizer_holds_only_them(tmp_path):
    runner = xLSTMRunner.from_pretrained(base_dir(tmp_path, quantized=True))
    frozen = {k: np.array(v) for k, v in tree_flatten(runner.model.parameters())}
    t = Trainer(runner, TokenBatches(DATA, 4, 16, seed=1), TrainConfig(steps=3, batch_size=4, seq_len=16, lr=1e-2,
                warmup=1, save_every=3), tmp_path / "run", progress=False, lora=LoRAConfig(rank=2, num_layers=1))
    t.train()
    adapters = set(adapter_weights(runner.model))
    assert adapters and all("blocks.1." in k and ".lora_" in k for k in adapters)  # the last block only
    state = {k.rsplit(".", 1)[0] for k, _ in tree_flatten(t.optimizer.state) if k not in ("step", "learning_rate")}
    assert state == adapters
    for key, value in tree_flatten(runner.model.parameters()):  # the base is untouched, still quantized
        if ".lora_" not in key:
            np.testing.assert_array_equal(np.array(value), frozen[key.replace(".linear.", ".")])
    assert {f.name for f in (tmp_path / "run").iterdir()} == {"adapters.safetensors", "adapter_config.json",
                                                             "trainer_state.safetensors", "trainer.json", "loss.svg"}
    assert set(mx.load(str(tmp_path / "run" / "adapters.safetensors"))) == adapters


def test_an_adapter_on_pieces_changes_only_their_rows_of_the_merged_projection(tmp_path):
    base = base_dir(tmp_path, quantized=False)
    with_random_adapters(base, LoRAConfig(rank=2, num_layers=-1, keys=["q", "v", "proj_up"]), tmp_path / "ad")
    fuse_adapters(base, tmp_path / "ad", tmp_path / "fused")
    before, after = (mx.load(str(tmp_path / d / "model.safetensors")) for d in ("f", "fused"))
    changed = {k for k in before if not np.array_equal(np.array(before[k]), np.array(after[k]))}
    assert changed == {f"backbone.blocks.{i}.{n}.weight" for i in (0, 1)
                       for n in ("mlstm_layer.q", "mlstm_layer.v", "ffn.proj_up")}


@pytest.mark.parametrize("quantized", [False, True])
def test_fused_adapters_give_the_logits_of_the_unfused_model(tmp_path, quantized):
    base = base_dir(tmp_path, quantized)
    unfused = with_random_adapters(base, LoRAConfig(rank=4, num_layers=-1), tmp_path / "ad")
    want = np.array(unfused(X)[0])
    plain = np.array(xLSTMRunner.from_pretrained(base)(X)[0])
    fuse_adapters(base, tmp_path / "ad", tmp_path / "full", dequantize=True)
    full = xLSTMRunner.from_pretrained(tmp_path / "full")
    assert full.quantization is None
    np.testing.assert_allclose(np.array(full(X)[0]), want, atol=1e-4, rtol=1e-4)
    if quantized:  # re-quantized as the base was: equal up to the 8-bit rounding, far closer than the base
        fuse_adapters(base, tmp_path / "ad", tmp_path / "requant")
        requant = xLSTMRunner.from_pretrained(tmp_path / "requant")
        assert requant.quantization == {"group_size": 32, "bits": 8, "mode": "affine"}
        err, effect = np.abs(np.array(requant(X)[0]) - want).max(), np.abs(plain - want).max()
        assert err < 0.05 * effect, (err, effect)
    loaded = xLSTMRunner.from_pretrained(base)  # adapters applied unfused, as generate --adapters does
    load_adapters(loaded, tmp_path / "ad")
    np.testing.assert_array_equal(np.array(loaded(X)[0]), want)


def test_adapters_that_do_not_fit_the_base_are_one_line(tmp_path):
    base = base_dir(tmp_path, quantized=False)
    with_random_adapters(base, LoRAConfig(rank=2, num_layers=1), tmp_path / "ad")
    cfg = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    cfg["lora_parameters"]["rank"] = 3
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match=r"adapters.safetensors tensor '.*lora_a' has shape \(32, 2\), the base "
                                           r"model needs \(32, 3\)"):
        load_adapters(xLSTMRunner.from_pretrained(base), tmp_path / "ad")
    with pytest.raises(AdapterError, match=r"has no adapter_config.json"):
        load_adapters(xLSTMRunner.from_pretrained(base), tmp_path)


def lora_trainer(base, out, steps, **kw):
    runner = xLSTMRunner.from_pretrained(base)
    cfg = TrainConfig(steps=steps, batch_size=4, seq_len=16, lr=1e-2, warmup=2, log_every=4, eval_every=4,
                      eval_batches=1, save_every=kw.pop("save_every", 4))
    return Trainer(runner, TokenBatches(DATA, 4, 16, seed=1), cfg, out, val_batches=TokenBatches(DATA, 4, 16, seed=2),
                   progress=False, lora=LoRAConfig(rank=2, num_layers=-1, dropout=0.1, keys=["q", "proj_down"]),
                   base=str(base))


def test_an_interrupted_and_resumed_lora_run_equals_an_uninterrupted_one(tmp_path):
    base = base_dir(tmp_path, quantized=True)
    whole = lora_trainer(base, tmp_path / "whole", 12)
    whole.train()
    lora_trainer(base, tmp_path / "split", 12).train(stop_after=8)  # "killed" after the checkpoint at step 8
    resumed = lora_trainer(base, tmp_path / "split", 12)
    resumed.train()
    assert resumed.log.losses == whole.log.losses and resumed.log.val == whole.log.val
    for key, value in adapter_weights(whole.runner.model).items():
        np.testing.assert_array_equal(np.array(adapter_weights(resumed.runner.model)[key]), np.array(value))


def test_a_lora_run_refuses_an_out_holding_a_run_with_other_options(tmp_path):
    base = base_dir(tmp_path, quantized=False)
    lora_trainer(base, tmp_path / "run", 4).train()
    other = lora_trainer(base, tmp_path / "run", 8)
    other.lora.rank = 4
    with pytest.raises(InputError, match="holds a LoRA run with other options"):
        other.train()
    with pytest.raises(InputError, match=f"holds adapters of the base {base}, not of elsewhere"):
        Trainer(xLSTMRunner.from_pretrained(base), other.batches, other.cfg, tmp_path / "run", progress=False,
                lora=LoRAConfig(rank=2, num_layers=-1, dropout=0.1, keys=["q", "proj_down"]), base="elsewhere").train()
    with pytest.raises(InputError, match="holds a LoRA run .adapter_config.json., this is a full training run"):
        Trainer(xLSTMRunner.from_pretrained(base), other.batches, other.cfg, tmp_path / "run", progress=False).train()


def held_out_loss(runner, tokens) -> float:
    logits = runner(mx.array(tokens[None, :-1]))[0].astype(mx.float32)
    import mlx.nn as nn

    return float(nn.losses.cross_entropy(logits, mx.array(tokens[None, 1:]), reduction="mean").item())


def test_lora_on_the_shipped_model_lowers_the_loss_on_held_out_text(tmp_path):
    runner = xLSTMRunner.from_pretrained(SHIPPED)
    assert runner.quantization  # the shipped model is quantized: QLoRA-style
    tok = runner.tokenizer

    def text(seed):
        rng = np.random.default_rng(seed)
        return "".join(f"    assert add({a}, {b}) == {a + b}\n" for a, b in rng.integers(0, 50, size=(300, 2)))

    train, held = np.array(tok.encode(text(0)), np.int32), np.array(tok.encode(text(1))[:257], np.int32)
    before = held_out_loss(runner, held)
    cfg = TrainConfig(steps=8, batch_size=2, seq_len=48, lr=5e-4, warmup=2, save_every=8)
    Trainer(runner, TokenBatches(train, 2, 48), cfg, tmp_path / "ad", progress=False,
            lora=LoRAConfig(rank=8, num_layers=-1), base=SHIPPED).train()
    runner._decode_fn = {}
    after = held_out_loss(runner, held)
    assert after < 0.7 * before, (before, after)
    fresh = xLSTMRunner.from_pretrained(SHIPPED)
    assert held_out_loss(fresh, held) == pytest.approx(before)  # the checkpoint itself is unchanged
    load_adapters(fresh, tmp_path / "ad")
    assert held_out_loss(fresh, held) == pytest.approx(after, rel=1e-5)


def test_a_quantized_model_trains_only_through_adapters(tmp_path):
    runner = xLSTMRunner.from_pretrained(base_dir(tmp_path, quantized=True))
    cfg = TrainConfig(steps=1, batch_size=4, seq_len=16)
    with pytest.raises(InputError, match=r"the model is quantized \(8-bit\): its weights cannot be trained directly"):
        Trainer(runner, TokenBatches(DATA, 4, 16), cfg, tmp_path / "run", progress=False)


def test_adapters_are_written_atomically(tmp_path):
    base = base_dir(tmp_path, quantized=False)
    runner = with_random_adapters(base, LoRAConfig(rank=2, num_layers=1), tmp_path / "ad")
    before = (tmp_path / "ad" / "adapters.safetensors").read_bytes()

    def crash(tmp):
        raise OSError("disk full")

    runner.model.update(tree_unflatten_b(runner.model))
    with pytest.raises(OSError, match="disk full"):
        save_adapters(tmp_path / "ad", runner.model, LoRAConfig(rank=2, num_layers=1), base, extra=crash)
    assert (tmp_path / "ad" / "adapters.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ad")) in ([], [".ad.lock"])


def test_a_model_with_unfused_adapters_is_not_saved_as_a_checkpoint_until_fused(tmp_path):
    from xlstm_metal.checkpoint.files import CheckpointError
    from xlstm_metal.train import fuse_lora

    base = base_dir(tmp_path, quantized=False)
    runner = with_random_adapters(base, LoRAConfig(rank=2, num_layers=1), tmp_path / "ad")
    want = np.array(runner(X)[0])
    with pytest.raises(CheckpointError, match="carries unfused LoRA adapters"):
        runner.save_pretrained(tmp_path / "out")
    assert fuse_lora(runner.model) == 4  # two projections in each of the last block's two nodes
    runner.save_pretrained(tmp_path / "out")
    np.testing.assert_allclose(np.array(xLSTMRunner.from_pretrained(tmp_path / "out")(X)[0]), want, atol=1e-4)


@settings(max_examples=examples(25))
@given(st.integers(1, 4), st.lists(st.integers(1, 5), min_size=1, max_size=5), st.data())
def test_an_adapter_on_any_rows_fuses_into_exactly_those_rows(rank, sizes, data):
    import mlx.nn as nn

    from xlstm_metal.train.lora import LoRALinear

    pieces = [(sum(sizes[:i]), sum(sizes[:i + 1])) for i in range(len(sizes))]
    chosen = data.draw(st.lists(st.sampled_from(pieces), min_size=1, unique=True).map(sorted))
    base = nn.Linear(6, sum(sizes))
    lora = LoRALinear(base, rank, scale=2.0, segments=chosen)
    lora.lora_b = mx.random.normal(lora.lora_b.shape)
    x = mx.random.normal((3, 6))
    fused = lora.fused()
    np.testing.assert_allclose(np.array(fused(x)), np.array(lora(x)), atol=1e-4, rtol=1e-4)
    changed = np.abs(np.array(fused.weight) - np.array(base.weight)).max(axis=1) > 0
    inside = np.zeros(sum(sizes), dtype=bool)
    for start, stop in chosen:
        inside[start:stop] = True
    assert not changed[~inside].any() and changed[inside].all()

