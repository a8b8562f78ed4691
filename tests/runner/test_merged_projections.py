"""Merged input projections (one matmul per mLSTM / SwiGLU block): same results as the separate
projections, official keys in and out of checkpoints, no weight held twice, quantized models,
training, and un-merging whenever a projection's weight is replaced."""
import io
import json
import re

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.blocks.projections import MergeableProjections
from xlstm_metal.checkpoint import config_to_spec, xLSTMConfig
from xlstm_metal.checkpoint.save import convert
from xlstm_metal.plan import make_plan
from xlstm_metal.runtime import execute

BASE = {"embedding_dim": 64, "num_heads": 4, "num_blocks": 2, "vocab_size": 97, "chunk_size": 8, "use_bias": False,
        "weight_mode": "single"}
MLSTM = ("q", "k", "v", "ogate_preact", "igate_preact", "fgate_preact")


def spec(**overrides):
    return config_to_spec(xLSTMConfig.from_dict(dict(BASE, **overrides)))


def pair(spec_, dtype="float32", seed=3):
    """The same weights, merged and not."""
    merged = xLSTMRunner.from_spec(spec_, dtype=dtype, seed=seed)
    plain = xLSTMRunner.from_spec(spec_, dtype=dtype, seed=seed, merge_projections=False)
    # random biases (not the gates' init constants; with use_bias, the projections' too)
    for r in (merged, plain):
        rng = np.random.default_rng(seed)
        biases = [(k, mx.array(rng.normal(size=v.shape).astype(np.float32)).astype(v.dtype))
                  for k, v in sorted(tree_flatten(r.model.parameters())) if k.endswith(".bias")]
        r.model.update(tree_unflatten(biases))
    merged.merge_projections()  # the update above un-merged it
    assert merged.projections_merged and not plain.projections_merged
    return merged, plain


def _nested(key, value):
    return tree_unflatten([(key, value)])


def tokens(seed, B, S):
    return mx.array(np.random.default_rng(seed).integers(0, 97, size=(B, S)), dtype=mx.int32)


# float32 results of the merged and the separate products: equal up to the order of the sums. The CPU's GEMMs keep
# that order; cuBLAS picks another algorithm (tiling, split-K) for a merged matrix's shape, which moves results by
# a few float32 roundings per product (up to 4e-6 of max |logit| measured on an H200, TF32 off).
FLOAT32_TOL = 1e-6 if mx.default_device() == mx.cpu else 1e-5


def allocated(nbytes: int) -> int:
    """The active memory one fresh buffer of ``nbytes`` takes on this device (the CUDA allocator rounds sizes up)."""
    mx.synchronize()
    base = mx.get_active_memory()
    a = mx.zeros((nbytes,), mx.uint8)
    mx.eval(a)
    used = mx.get_active_memory() - base
    del a
    return used


def assert_same(a, b, tol=FLOAT32_TOL):
    a, b = np.array(a.astype(mx.float32)), np.array(b.astype(mx.float32))
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())))


def blocks(runner):
    return [runner.graph.block(n) for n in runner.graph.compute_nodes()
            if isinstance(runner.graph.block(n), MergeableProjections) and runner.graph.block(n).projection_names()]


def primitives(outputs) -> list[str]:
    """The primitives of the (unevaluated) graph behind ``outputs``, from MLX's DOT export."""
    dot = io.StringIO()
    mx.export_to_dot(dot, *outputs)
    return re.findall(r'label ="([^"]+)", shape=rectangle', dot.getvalue())


@pytest.mark.parametrize("variant", [{}, {"use_bias": True}, {"weight_mode": "fused"}, {"num_heads": 8}])
def test_merged_prefill_and_decode_equal_the_separate_projections_float32(variant):
    merged, plain = pair(spec(**variant))
    x = tokens(0, 2, 19)
    for S in (19, 5):  # chunkwise prefill (several chunks) and a short one
        lm, sm = merged(x[:, :S])
        lp, sp = plain(x[:, :S])
        assert_same(lm, lp)
        for a, b in zip(sm.arrays(), sp.arrays()):
            assert_same(a, b)
    # compiled single-token decoding, continuing from the prefill state
    state_m, state_p = merged(x[:, :7])[1], plain(x[:, :7])[1]
    for t in range(7, 12):
        lm, state_m = merged(x[:, t:t + 1], state_m)
        lp, state_p = plain(x[:, t:t + 1], state_p)
        assert_same(lm, lp)
    for a, b in zip(state_m.arrays(), state_p.arrays()):
        assert_same(a, b)
    assert merged.projections_merged


def test_merged_bfloat16_equals_separate_up_to_matmul_rounding():
    merged, plain = pair(spec(), dtype="bfloat16")
    x = tokens(1, 1, 13)
    lm, sm = merged(x)
    lp, sp = plain(x)
    assert_same(lm, lp, tol=2e-2)
    d1, _ = merged(x[:, :1], sm)
    d2, _ = plain(x[:, :1], sp)
    assert_same(d1, d2, tol=2e-2)


def test_each_group_is_one_matmul_and_every_layer_adds_its_own_bias():
    merged, plain = pair(spec())
    for blk in blocks(merged):
        names = blk.projection_names()
        (group,), (arrays,) = blk._merge_groups, blk["_merged"]
        assert group.names == names  # every projection of the block in one group
        rows = sum(blk[n].weight.shape[0] for n in names)
        assert arrays["weight"].shape == (rows, blk[names[0]].weight.shape[1])
        for n, (a, b) in zip(group.names, group.bounds):
            assert np.array_equal(np.array(arrays["weight"][a:b]), np.array(blk[n].weight))
        assert "bias" not in arrays  # a biased product leaves MLX's batch-1 gemv for cuBLASLt
        x = mx.random.normal((1, 1, blk[names[0]].weight.shape[1]))
        ops = primitives(blk.project(x))
        assert sum(o in ("Matmul", "AddMM") for o in ops) == 1 and "AddMM" not in ops, ops
        for n, got in zip(names, blk.project(x)):  # each layer's bias added to its slice, bit for bit
            assert np.array_equal(np.array(got), np.array(x @ blk[n].weight.T + (blk[n].bias if "bias" in blk[n] else 0))), n
        sep = primitives([blk[n](x) for n in names])
        assert sum(o in ("Matmul", "AddMM") for o in sep) == len(names)
    # gates keep their biases although use_bias is False; a caller can take them back unadded
    m0 = merged.graph.block("backbone.blocks.0.mlstm_layer")
    assert "bias" not in m0.q and "bias" in m0.igate_preact
    x = mx.random.normal((1, 1, m0.q.weight.shape[1]))
    outs, pending = m0.project_pending(x, defer_bias=("igate_preact", "fgate_preact"))
    assert set(pending) == {"igate_preact", "fgate_preact"} and pending["igate_preact"] is m0.igate_preact.bias
    assert np.array_equal(np.array(outs[4] + pending["igate_preact"]), np.array(m0.project(x)[4]))


def test_parameters_keep_the_official_keys_and_are_views_of_the_merged_matrix():
    spec_ = spec()
    plain = xLSTMRunner.from_spec(spec_, seed=0, merge_projections=False)
    mx.eval(plain.model.parameters())
    keys = {k: v.shape for k, v in tree_flatten(plain.model.parameters())}
    sizes = [[plain.graph.block(b)[n].weight.nbytes for n in g] for b, g in
             (("backbone.blocks.0.mlstm_layer", MLSTM), ("backbone.blocks.0.ffn", ("proj_up_gate", "proj_up")))]
    # what holding each merged matrix instead of its parts costs in allocator rounding (nothing on the CPU)
    rounding = 2 * sum(max(0, allocated(sum(g)) - sum(allocated(n) for n in g)) for g in sizes)
    mx.synchronize()
    base = mx.get_active_memory()
    plain.merge_projections()
    merged_keys = {k: v.shape for k, v in tree_flatten(plain.model.parameters())}
    assert merged_keys == keys
    assert "backbone.blocks.0.mlstm_layer.q.weight" in merged_keys and not any("_merged" in k for k in merged_keys)
    # the merged arrays hold the data; the official arrays are slices of them: no weight is held twice
    # (a copy would add all 2 x sum(sizes) bytes)
    mx.synchronize()
    grew = mx.get_active_memory() - base
    assert grew <= rounding + 4096, (grew, rounding, 2 * sum(map(sum, sizes)))
    assert plain.num_parameters() == sum(np.prod(s) for s in keys.values())


def test_merging_a_large_model_needs_about_one_block_of_extra_memory():
    spec_ = spec(embedding_dim=512, num_heads=4, num_blocks=6, vocab_size=64)
    r = xLSTMRunner.from_spec(spec_, seed=0, merge_projections=False)
    mx.eval(r.model.parameters())
    weights = sum(v.nbytes for _, v in tree_flatten(r.model.parameters()))
    largest = max(sum(blk[n].weight.nbytes for n in blk.projection_names()) for blk in blocks(r))
    largest = allocated(largest)  # (rounded up by the allocator)
    mx.synchronize()
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    r.merge_projections()
    peak = mx.get_peak_memory() - base
    assert peak <= 1.1 * largest + (1 << 20), (peak, largest, weights)
    mx.synchronize()
    assert mx.get_active_memory() - base < (1 << 20)


def test_save_load_round_trip_writes_the_official_single_mode_keys(tmp_path):
    merged, plain = pair(spec())
    merged.save_pretrained(tmp_path / "m")
    saved = mx.load(str(tmp_path / "m" / "model.safetensors"))
    official = dict(tree_flatten(plain.model.parameters()))
    assert set(saved) == set(official)
    for k, v in official.items():
        assert np.array_equal(np.array(saved[k]), np.array(v)), k  # views are written as their own rows
    back = xLSTMRunner.from_pretrained(tmp_path / "m")  # strict: every key checked
    assert back.projections_merged
    x = tokens(2, 2, 9)
    assert_same(back(x)[0], plain(x)[0])
    unmerged = xLSTMRunner.from_pretrained(tmp_path / "m", merge_projections=False)
    assert not unmerged.projections_merged
    assert_same(unmerged(x)[0], plain(x)[0])


@pytest.mark.parametrize("num_heads", [4, 8])  # 4: the 4-row gates stay full precision; 8: everything quantizes
def test_a_quantized_model_merges_and_matches_the_unmerged_quantized_model(num_heads, tmp_path):
    merged, plain = pair(spec(num_heads=num_heads))
    merged.quantize(bits=8, group_size=32)
    plain.quantize(bits=8, group_size=32)
    assert merged.projections_merged and not plain.projections_merged
    m0 = merged.graph.block("backbone.blocks.0.mlstm_layer")
    assert isinstance(m0.q, nn.QuantizedLinear)
    groups = [g.names for g in m0._merge_groups]
    assert groups == ([MLSTM] if num_heads == 8 else [MLSTM[:4], MLSTM[4:]])
    x = tokens(3, 2, 11)
    lm, sm = merged(x)
    lp, sp = plain(x)
    assert_same(lm, lp)
    assert_same(merged(x[:, :1], sm)[0], plain(x[:, :1], sp)[0])
    # save → load keeps the quantized official keys and loads merged
    merged.save_pretrained(tmp_path / "q")
    keys = set(mx.load(str(tmp_path / "q" / "model.safetensors")))
    assert keys == {k for k, _ in tree_flatten(plain.model.parameters())}
    assert "backbone.blocks.0.mlstm_layer.q.scales" in keys
    back = xLSTMRunner.from_pretrained(tmp_path / "q")
    assert back.projections_merged
    assert_same(back(x)[0], lp)


def test_convert_with_quantization_still_runs(tmp_path):
    src = xLSTMRunner.from_spec(spec(num_heads=8), seed=0)
    src.save_pretrained(tmp_path / "src", config=dict(BASE, num_heads=8, model_type="xlstm"))
    convert(tmp_path / "src", tmp_path / "q4", q_bits=4, q_group_size=32)
    assert json.loads((tmp_path / "q4" / "config.json").read_text())["quantization"]["bits"] == 4
    q4 = xLSTMRunner.from_pretrained(tmp_path / "q4")
    assert q4.projections_merged
    logits, state = q4(tokens(4, 1, 6))
    logits, _ = q4(tokens(5, 1, 1), state)
    assert np.all(np.isfinite(np.array(logits)))


def test_gradients_are_those_of_the_separate_projections_and_training_unmerges():
    merged, plain = pair(spec())
    x, y = tokens(6, 2, 12), tokens(7, 2, 12)
    plan = make_plan(merged.graph, 12, segment_len=None)

    def loss_of(runner):
        def loss(model):
            logits = execute(runner.graph, plan, x)[0]["lm_head"]  # not marked training: the un-merge does it
            return nn.losses.cross_entropy(logits, y, reduction="mean")
        return loss

    lm, gm = nn.value_and_grad(merged.model, loss_of(merged))(merged.model)
    lp, gp = nn.value_and_grad(plain.model, loss_of(plain))(plain.model)
    assert not merged.projections_merged  # value_and_grad replaced the weights by tracers: un-merged
    assert abs(lm.item() - lp.item()) <= FLOAT32_TOL * max(1.0, abs(lp.item()))
    gm, gp = dict(tree_flatten(gm)), dict(tree_flatten(gp))
    assert set(gm) == set(gp)
    assert float(mx.abs(gm["backbone.blocks.0.mlstm_layer.q.weight"]).max()) > 0
    for k in gp:
        assert_same(gm[k], gp[k], tol=10 * FLOAT32_TOL)


def test_the_trainer_unmerges_and_trains(tmp_path):
    from xlstm_metal.train import TrainConfig, Trainer
    from xlstm_metal.train.data import TokenBatches

    runner = xLSTMRunner.from_spec(spec(), seed=0)
    ids = np.random.default_rng(0).integers(0, 97, size=4000).astype(np.int32)
    cfg = TrainConfig(steps=3, batch_size=2, seq_len=16, warmup=1, save_every=3, eval_every=100, log_every=1)
    trainer = Trainer(runner, TokenBatches(ids, 2, 16, 0), cfg, tmp_path / "run", progress=False)
    assert not runner.projections_merged
    before = np.array(runner.graph.block("backbone.blocks.0.mlstm_layer").q.weight)
    log = trainer.train()
    assert len(log.losses) == 3 and all(np.isfinite(log.losses))
    assert not np.array_equal(before, np.array(runner.graph.block("backbone.blocks.0.mlstm_layer").q.weight))
    saved = set(mx.load(str(tmp_path / "run" / "model.safetensors")))
    assert "backbone.blocks.0.mlstm_layer.q.weight" in saved and not any("_merged" in k for k in saved)
    runner.merge_projections()  # inference after training
    assert runner.projections_merged


def test_replacing_a_projection_weight_unmerges_and_is_used(tmp_path):
    merged, plain = pair(spec())
    x = tokens(8, 1, 6)
    merged(x)
    merged(x[:, :1])  # builds the compiled decode step on the merged weights
    new = mx.random.normal(plain.graph.block("backbone.blocks.1.ffn").proj_up.weight.shape)
    for r in (merged, plain):
        r.model.update(_nested("backbone.blocks.1.ffn.proj_up.weight", new))
    ffn = merged.graph.block("backbone.blocks.1.ffn")
    assert not ffn.projections_merged and "_merged" not in ffn
    assert merged.graph.block("backbone.blocks.0.ffn").projections_merged  # other blocks stay merged
    assert_same(merged(x)[0], plain(x)[0])
    lm, sm = merged(x[:, :1])  # the compiled step sees the change (its captured inputs changed)
    lp, sp = plain(x[:, :1])
    assert_same(lm, lp)
    merged.merge_projections()
    assert_same(merged(x[:, :1], sm)[0], plain(x[:, :1], sp)[0])
    # load_weights replaces arrays too
    merged.model.load_weights(list(tree_flatten(plain.model.parameters())))
    assert not any(b.projections_merged for b in blocks(merged))


def test_blocks_are_built_unmerged_and_merge_on_request():
    from xlstm_metal.blocks import TensorType, get_block

    cls = get_block("swiglu")
    blk = cls(cls.Params(), [TensorType.features(32)])
    assert not blk.projections_merged
    x = mx.random.normal((2, 3, 32))
    ref, _ = blk([x])
    assert blk.merge_projections() and blk.projections_merged
    out, _ = blk([x])
    assert_same(out, ref)
    assert blk.unmerge_projections() and not blk.projections_merged and "_merged" not in blk
    assert_same(blk([x])[0], ref)
