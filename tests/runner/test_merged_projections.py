"""One parameter layout per block: an mLSTM layer's six input projections are one matrix (``proj_in``, one
matmul), a SwiGLU's two are one (``proj_up_gate_z``); checkpoints keep the official single / fused names both
ways; quantization, head sharding and gradients work on that layout; nothing watches assignments."""
import io
import re
import types
from dataclasses import replace

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.blocks import NodeContext, TensorType, get_block
from xlstm_metal.checkpoint import config_to_spec, official_keys, xLSTMConfig
from xlstm_metal.distributed.tensor_parallel import take, within
from xlstm_metal.kernels import get_kernel
from xlstm_metal.kernels.mlstm.native import mlstm_step_native_capping_gates
from xlstm_metal.plan import make_plan
from xlstm_metal.runtime import execute

BASE = {"embedding_dim": 64, "num_heads": 4, "num_blocks": 2, "vocab_size": 97, "chunk_size": 8, "use_bias": False,
        "weight_mode": "single"}
SINGLE = ("q", "k", "v", "ogate_preact", "igate_preact", "fgate_preact")


def config(**overrides):
    return dict(BASE, model_type="xlstm", **overrides)


def runner(seed=3, dtype="float32", **overrides):
    """A model from the config with every parameter random (biases too, not the gates' init constants)."""
    r = xLSTMRunner.from_spec(config_to_spec(xLSTMConfig.from_dict(config(**overrides))), dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    r.model.update(tree_unflatten([(k, mx.array(rng.normal(size=v.shape).astype(np.float32) / np.sqrt(v.shape[-1]))
                                    .astype(v.dtype)) for k, v in tree_flatten(r.model.parameters())]))
    return r


def tokens(seed, B, S):
    return mx.array(np.random.default_rng(seed).integers(0, 97, size=(B, S)), dtype=mx.int32)


def matmuls(outputs) -> int:
    """The products in the (unevaluated) graph behind ``outputs``, from MLX's DOT export."""
    dot = io.StringIO()
    mx.export_to_dot(dot, *outputs)
    ops = re.findall(r'label ="([^"]+)", shape=rectangle', dot.getvalue())
    return sum(o in ("Matmul", "AddMM", "QuantizedMatmul") for o in ops)


def fake_kernel(caps_gates=False, seen=None):
    """A cell that passes v through (no products of its own) and records what it was given."""
    def fn(q, k, v, i, f, state, **kw):
        if seen is not None:
            seen.update(kw, i=i, f=f)
        return v, state
    return types.SimpleNamespace(fn=fn, caps_gates=caps_gates)


@pytest.mark.parametrize("quantize", [False, True])
def test_each_block_projects_its_input_with_one_matmul(quantize):
    r = runner(num_heads=8)
    if quantize:
        r.quantize(bits=8, group_size=32)
    m, ffn = r.graph.block("backbone.blocks.0.mlstm_layer"), r.graph.block("backbone.blocks.0.ffn")
    assert isinstance(m.proj_in, nn.QuantizedLinear) == quantize
    x = mx.random.normal((1, 1, 64))
    out, _ = m([x], m.init_state(1), NodeContext(kernel=fake_kernel()))
    assert matmuls([out]) == 2  # proj_in and out_proj
    assert matmuls([ffn([x])[0]]) == 2  # proj_up_gate_z and proj_down


def test_the_gate_biases_go_to_a_gate_capping_kernel_unadded():
    m = runner().graph.block("backbone.blocks.0.mlstm_layer")
    x = mx.random.normal((2, 1, 64))
    seen: dict = {}
    m([x], m.init_state(2), NodeContext(kernel=fake_kernel(True, seen)))
    raw = (x @ m.proj_in.weight.T)[..., -8:]
    assert np.array_equal(np.array(seen["i"]), np.array(raw[..., :4].transpose(0, 2, 1)))  # no bias, no cap
    assert np.array_equal(np.array(seen["gate_bias"][0]), np.array(m.gate_bias[:4]))
    assert np.array_equal(np.array(seen["gate_bias"][1]), np.array(m.gate_bias[4:])) and seen["gate_soft_cap"] == 15.0
    step = get_kernel("mlstm", "native_step")
    capping = replace(step, fn=mlstm_step_native_capping_gates, caps_gates=True)
    a = m([x], m.init_state(2), NodeContext(kernel=step))
    b = m([x], m.init_state(2), NodeContext(kernel=capping))
    np.testing.assert_allclose(np.array(a[0]), np.array(b[0]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", [{}, {"weight_mode": "fused"}, {"use_bias": True},
                                     {"weight_mode": "fused", "use_bias": True}])
def test_save_writes_the_official_names_and_loads_back(variant, tmp_path):
    r = runner(**variant)
    r.save_pretrained(tmp_path / "m", config=config(**variant))
    saved = mx.load(str(tmp_path / "m" / "model.safetensors"))
    p = "backbone.blocks.0.mlstm_layer."
    m = r.graph.block(p[:-1])
    if variant.get("weight_mode") == "fused":
        names = {p + "qkv_opreact.weight": 2 * 32 + 2 * 64, p + "ifgate_preact.weight": 8}
        assert saved["backbone.blocks.0.ffn.proj_up_gate_z.weight"].shape == (2 * 192, 64)
    else:
        names = dict(zip((p + n + ".weight" for n in SINGLE), (32, 32, 64, 64, 4, 4)))
        assert saved["backbone.blocks.0.ffn.proj_up.weight"].shape == (192, 64)
    assert np.array_equal(np.concatenate([np.array(saved[n]) for n in names]), np.array(m.proj_in.weight))
    assert all(saved[n].shape[0] == rows for n, rows in names.items())
    assert not any(k.endswith(("proj_in.weight", "gate_bias", "qkvo_bias")) for k in saved)
    assert set(saved) == {n for pieces in official_keys(r.graph).values() for n, _ in pieces}
    back = xLSTMRunner.from_pretrained(tmp_path / "m")
    ours, theirs = sorted(tree_flatten(r.model.parameters())), sorted(tree_flatten(back.model.parameters()))
    for (k, a), (k2, b) in zip(ours, theirs):
        assert k == k2 and np.array_equal(np.array(a), np.array(b)), k
    x = tokens(2, 2, 9)
    np.testing.assert_array_equal(np.array(back(x)[0]), np.array(r(x)[0]))


def test_a_quantized_model_quantizes_the_merged_matrix_and_saves_each_official_piece(tmp_path):
    r = runner(num_heads=8)
    full = {k: v for k, v in tree_flatten(r.model.parameters())}
    x = tokens(3, 2, 11)
    r.quantize(bits=8, group_size=32)
    lq, sq = r(x)
    r.save_pretrained(tmp_path / "q", config=config(num_heads=8))
    saved = mx.load(str(tmp_path / "q" / "model.safetensors"))
    w = full["backbone.blocks.0.mlstm_layer.proj_in.weight"]
    k = mx.quantize(w[32:64], group_size=32, bits=8)  # the k rows: groups never span rows
    assert all(np.array_equal(np.array(saved[f"backbone.blocks.0.mlstm_layer.k.{f}"]), np.array(a))
               for f, a in zip(("weight", "scales", "biases"), k))
    back = xLSTMRunner.from_pretrained(tmp_path / "q")
    assert isinstance(back.graph.block("backbone.blocks.0.mlstm_layer").proj_in, nn.QuantizedLinear)
    np.testing.assert_array_equal(np.array(back(x)[0]), np.array(lq))
    np.testing.assert_array_equal(np.array(back(x[:, :1], sq)[0]), np.array(r(x[:, :1], sq)[0]))


class Group:
    """A stand-in for a distributed group: rank ``rank`` of ``size`` (only the sharding is exercised, no collective)."""

    def __init__(self, rank, size):
        self._rank, self._size = rank, size

    def rank(self):
        return self._rank

    def size(self):
        return self._size


def test_sharding_keeps_this_ranks_rows_of_each_segment_and_loading_reads_only_them(tmp_path):
    from xlstm_metal.distributed import shard_heads

    r = runner(use_bias=True)
    r.save_pretrained(tmp_path / "m", config=config(use_bias=True))
    full = dict(tree_flatten(r.model.parameters()))
    shard_heads(r, Group(1, 2))  # heads 2-3 of 4
    m = r.graph.block("backbone.blocks.0.mlstm_layer")
    assert (m.local_heads, m.qk_dim, m.v_dim) == (2, 16, 32)
    w = np.array(full["backbone.blocks.0.mlstm_layer.proj_in.weight"])
    rows = [w[16:32], w[48:64], w[96:128], w[160:192], w[194:196], w[198:200]]  # q k v o igate fgate of heads 2-3
    assert np.array_equal(np.array(m.proj_in.weight), np.concatenate(rows))
    gates = np.array(full["backbone.blocks.0.mlstm_layer.gate_bias"])
    assert np.array_equal(np.array(m.gate_bias), gates[[2, 3, 6, 7]])
    norm_bias = np.array(full["backbone.blocks.0.mlstm_layer.multihead_norm.bias"])
    assert np.array_equal(np.array(m.multihead_norm.bias), norm_bias[32:64])  # a bias follows its weight's rows
    assert not np.array(m.out_proj.bias).any()  # a partial output's bias: added by rank 0 alone
    loaded = xLSTMRunner.from_pretrained(tmp_path / "m", shard=Group(1, 2))
    got = dict(tree_flatten(loaded.model.parameters()))
    for key, a in tree_flatten(r.model.parameters()):
        assert np.array_equal(np.array(got[key]), np.array(a)), key
    assert within([(0, 16, 32), (0, 48, 64)], 32, 32) == [(0, 16, 32)]  # the k tensor: its rows 16-31 only
    assert np.array_equal(np.array(take(mx.array(w), [(0, 1, 2), (0, 5, 7)])), w[[1, 5, 6]])


def test_gradients_reach_every_segment_and_match_finite_differences():
    r = runner(num_heads=4)
    x, y = tokens(6, 2, 12), tokens(7, 2, 12)
    key = "backbone.blocks.1.mlstm_layer"

    plan = make_plan(r.graph, 12, segment_len=None, training=True)

    def loss(model):
        logits = execute(r.graph, plan, x, training=True)[0]["lm_head"]
        return nn.losses.cross_entropy(logits, y, reduction="mean")

    value, grads = nn.value_and_grad(r.model, loss)(r.model)
    g = dict(tree_flatten(grads))
    gw, gb = np.array(g[f"{key}.proj_in.weight"]), np.array(g[f"{key}.gate_bias"])
    for a, b in ((0, 32), (32, 64), (64, 128), (128, 192), (192, 196), (196, 200)):  # q k v o i f
        assert np.abs(gw[a:b]).max() > 0, (a, b)
    assert np.abs(gb).max() > 0
    params = dict(tree_flatten(r.model.parameters()))
    for name, grad in ((f"{key}.proj_in.weight", gw), (f"{key}.gate_bias", gb)):
        d = grad / np.linalg.norm(grad)  # along the gradient: the slope is |grad|
        eps, ends = 0.05, []
        for s in (eps, -eps):
            r.model.update(tree_unflatten([(name, params[name] + s * mx.array(d))]))
            ends.append(loss(r.model).item())
        r.model.update(tree_unflatten([(name, params[name])]))
        fd, slope = (ends[0] - ends[1]) / (2 * eps), float(np.linalg.norm(grad))
        rounding = 4 * 6e-8 * abs(value.item()) / eps  # float32 loss values
        assert abs(fd - slope) <= 0.05 * slope + rounding, (name, fd, slope)


def test_replacing_a_weight_is_seen_by_every_path_including_the_compiled_decode():
    a, b = runner(seed=1), runner(seed=2)
    x = tokens(8, 1, 6)
    _, state = a(x)
    a(x[:, :1], state)  # builds the compiled decode step
    a.model.update(b.model.parameters())  # plain assignment: nothing intercepts it, nothing goes stale
    _, sa = a(x)
    _, sb = b(x)
    np.testing.assert_array_equal(np.array(a(x[:, :1], sa)[0]), np.array(b(x[:, :1], sb)[0]))


def test_a_block_built_alone_has_the_merged_layout():
    cls = get_block("swiglu")
    blk = cls(cls.Params(), [TensorType.features(32)])
    assert set(k for k, _ in tree_flatten(blk.parameters())) == {"proj_up_gate_z.weight", "proj_down.weight"}
    x = mx.random.normal((2, 3, 32))
    gate, z = np.split(np.array(x @ blk.proj_up_gate_z.weight.T), 2, axis=-1)
    ref = (gate / (1 + np.exp(-gate)) * z) @ np.array(blk.proj_down.weight).T
    np.testing.assert_allclose(np.array(blk([x])[0]), ref, rtol=1e-5, atol=1e-6)


def test_a_quantized_checkpoint_with_full_precision_gate_pieces_loads_them_quantized(tmp_path):
    """Older writers left tiny gate projections unquantized; such a piece is quantized as it is read."""
    r = runner(num_heads=4)
    full = dict(tree_flatten(r.model.parameters()))
    r.quantize(bits=8, group_size=32)
    r.save_pretrained(tmp_path / "q", config=config(num_heads=4))
    path = tmp_path / "q" / "model.safetensors"
    saved = dict(mx.load(str(path)))
    for b in range(2):
        p = f"backbone.blocks.{b}.mlstm_layer."
        for n, rows in (("igate_preact", slice(192, 196)), ("fgate_preact", slice(196, 200))):
            del saved[p + n + ".scales"], saved[p + n + ".biases"]
            saved[p + n + ".weight"] = full[p + "proj_in.weight"][rows]
    mx.save_safetensors(str(path), saved)
    back = xLSTMRunner.from_pretrained(tmp_path / "q")
    ours, theirs = sorted(tree_flatten(r.model.parameters())), sorted(tree_flatten(back.model.parameters()))
    for (k, a), (_, b) in zip(ours, theirs):
        assert np.array_equal(np.array(a), np.array(b)), k
