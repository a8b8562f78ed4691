"""Hypothesis strategies: mLSTM kernel inputs, valid wiring specs, and invalid (mutated) specs.

Kernel inputs come from a drawn seed with numpy, so a shrunk counterexample is a few numbers that reproduce it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml
from hypothesis import strategies as st


@dataclass
class MLSTMCase:
    """One kernel input set; ``arrays()`` gives float64 numpy q, k, v, i, f, state, mask."""

    batch: int
    heads: int
    seq_len: int
    dk: int
    dv: int
    seed: int
    gate_style: str
    with_state: bool
    with_mask: bool
    dtype: str = "float32"

    def arrays(self):
        rng = np.random.default_rng(self.seed)
        B, NH, S = self.batch, self.heads, self.seq_len
        q, k = rng.normal(size=(B, NH, S, self.dk)), rng.normal(size=(B, NH, S, self.dk))
        v = rng.normal(size=(B, NH, S, self.dv))
        if self.gate_style == "normal":
            i, f = rng.normal(size=(B, NH, S)) * 3, rng.normal(size=(B, NH, S)) * 3 + 2
        elif self.gate_style == "extreme":  # at and near the soft cap of 15
            i = rng.choice([-15.0, -14.5, 0.0, 14.5, 15.0], size=(B, NH, S))
            f = rng.choice([-15.0, -14.5, 10.0, 15.0], size=(B, NH, S))
        else:  # "forgetful": forget gates mostly closed, input gates small
            i, f = rng.normal(size=(B, NH, S)) - 5, rng.normal(size=(B, NH, S)) - 6
        state = None
        if self.with_state:
            state = (rng.normal(size=(B, NH, self.dk, self.dv)), rng.normal(size=(B, NH, self.dk)),
                     rng.normal(size=(B, NH)) * 3)
        mask = None
        if self.with_mask:
            mask = rng.random((B, S)) > 0.3
            mask[:, -1] = True
        to32 = lambda a: np.asarray(a, np.float32).astype(np.float64)  # noqa: E731  (what an f32 kernel sees)
        return (to32(q), to32(k), to32(v), to32(i), to32(f),
                None if state is None else tuple(to32(a) for a in state), mask)


@st.composite
def mlstm_inputs(draw, max_batch: int = 2, max_heads: int = 3, max_dk: int = 16, max_dv: int = 16,
                 max_len: int = 300, dtypes=("float32",), masks: bool = True) -> MLSTMCase:
    return MLSTMCase(
        batch=draw(st.integers(1, max_batch)), heads=draw(st.integers(1, max_heads)),
        seq_len=draw(st.integers(1, max_len)), dk=draw(st.integers(1, max_dk)), dv=draw(st.integers(1, max_dv)),
        seed=draw(st.integers(0, 2**31 - 1)), gate_style=draw(st.sampled_from(["normal", "extreme", "forgetful"])),
        with_state=draw(st.booleans()), with_mask=masks and draw(st.booleans()),
        dtype=draw(st.sampled_from(list(dtypes))))


def chunk_sizes(max_size: int = 256):
    return st.one_of(st.sampled_from([1, 2, 16, 64, 128, max_size]), st.integers(1, max_size))


# ----------------------------------------------------------------------------- valid specs
BLOCK_PATTERNS = ("prenorm", "parallel", "mlstm_only", "ffn_only", "skip_two", "attention", "slstm", "conv_mlp")


def _node(name: str, type_: str, inputs: list[str], **params) -> dict[str, Any]:
    return {"name": name, "type": type_, "inputs": inputs, **params}


@st.composite
def wiring_specs(draw, max_depth: int = 3, dims=(8, 12, 16, 24), max_vocab: int = 40, patterns=BLOCK_PATTERNS,
                 use_repeat: bool | None = None) -> dict[str, Any]:
    """A random valid architecture: depth, width, heads per layer, block patterns, residual wiring."""
    d = draw(st.sampled_from(list(dims)))
    vocab = draw(st.integers(5, max_vocab))
    depth = draw(st.integers(1, max_depth))
    nodes = [_node("emb", "embedding", ["tokens"], num_embeddings="vocab", dim="d")]
    if use_repeat is None:
        use_repeat = draw(st.booleans())
    modes = st.sampled_from(["single", "fused"])

    def mlstm_node(name, inp):
        qk = draw(st.sampled_from([0.5, 1.0]))
        v = draw(st.sampled_from([0.5, 1.0, 2.0]))
        common = [h for h in range(1, 9) if int(d * qk) % h == 0 and int(d * v) % h == 0]
        return _node(name, "mlstm", [inp], num_heads=draw(st.sampled_from(common)), qk_dim_factor=qk,
                     v_dim_factor=v, chunk_size=draw(st.integers(1, 24)),
                     gate_soft_cap=draw(st.sampled_from([15.0, 5.0, None])), weight_mode=draw(modes))

    def ffn_node(name, inp):
        return _node(name, "swiglu", [inp], proj_factor=draw(st.sampled_from([1.0, 1.5, 2.667])),
                     round_up_to=draw(st.sampled_from([4, 8, 16])), weight_mode=draw(modes))

    def block(p, x):
        pattern = draw(st.sampled_from(list(patterns)))

        def residual(*body, norm="rms_norm", **norm_params):  # x + body(norm(x))
            return [_node(f"{p}n", norm, [x], **norm_params), *body, _node(f"{p}out", "add", [x, body[-1]["name"]])]

        if pattern == "prenorm":
            return [_node(f"{p}n1", "rms_norm", [x]), mlstm_node(f"{p}m", f"{p}n1"),
                    _node(f"{p}r1", "add", [x, f"{p}m"]), _node(f"{p}n2", "rms_norm", [f"{p}r1"]),
                    ffn_node(f"{p}f", f"{p}n2"), _node(f"{p}out", "add", [f"{p}r1", f"{p}f"])]
        if pattern == "parallel":
            return [_node(f"{p}n", "rms_norm", [x]), mlstm_node(f"{p}m", f"{p}n"), ffn_node(f"{p}f", f"{p}n"),
                    _node(f"{p}out", "add", [x, f"{p}m", f"{p}f"])]
        if pattern == "mlstm_only":
            return residual(mlstm_node(f"{p}m", f"{p}n"), norm="multihead_layer_norm",
                            num_heads=2 if d % 2 == 0 else 1)
        if pattern == "ffn_only":
            return residual(ffn_node(f"{p}f", f"{p}n"))
        heads = draw(st.sampled_from([h for h in (1, 2, 4) if d % h == 0]))
        if pattern == "attention":
            return residual(_node(f"{p}a", "attention", [f"{p}n"], num_heads=heads,
                                  window=draw(st.sampled_from([None, 3, 8])),
                                  rope_theta=draw(st.sampled_from([10000.0, None]))))
        if pattern == "slstm":
            return residual(_node(f"{p}s", "slstm", [f"{p}n"], num_heads=heads))
        if pattern == "conv_mlp":
            return residual(_node(f"{p}c", "causal_conv1d", [f"{p}n"], kernel_size=draw(st.integers(1, 4))),
                            _node(f"{p}g", "gated_mlp", [f"{p}c"],
                                  activation=draw(st.sampled_from(["gelu", "relu", "silu"])),
                                  proj_factor=2.0, round_up_to=4))
        # skip_two: two stacked mLSTMs, the residual skips both
        return residual(mlstm_node(f"{p}m1", f"{p}n"), mlstm_node(f"{p}m2", f"{p}m1"))

    last = "emb"
    if use_repeat:
        inner = block("", "x")
        nodes.append({"repeat": depth, "name": "blocks.{i}", "inputs": {"x": "emb"}, "output": "out", "nodes": inner})
        last = "blocks"
    else:
        for b in range(depth):
            nodes += block(f"b{b}.", last)
            last = f"b{b}.out"
    if draw(st.booleans()):
        nodes.append(_node("out_norm", "rms_norm", [last]))
        last = "out_norm"
    nodes.append(_node("lm_head", "lm_head", [last], vocab_size="vocab", soft_cap=draw(st.sampled_from([30.0, None]))))
    return {"name": "drawn", "dims": {"d": d, "vocab": vocab}, "inputs": ["tokens"], "nodes": nodes,
            "outputs": ["lm_head"]}


# ----------------------------------------------------------------------------- invalid specs
def _flat_nodes(spec):
    return [m for n in spec["nodes"] for m in (n["nodes"] if "repeat" in n else [n])]


MUTATIONS = ("dangling_input", "cycle", "wrong_type", "bad_heads", "unknown_block", "unknown_param", "missing_param",
             "duplicate_name", "bad_output", "bad_yaml", "drop_key", "not_a_mapping", "bad_repeat", "width_mismatch")


@st.composite
def invalid_specs(draw, base=None, mutations=MUTATIONS):
    """``(spec, mutation)``: a valid spec broken in one way; ``spec`` is a dict or YAML text."""
    spec = copy.deepcopy(draw(base if base is not None else wiring_specs(use_repeat=False)))
    kind = draw(st.sampled_from(list(mutations)))
    nodes = _flat_nodes(spec)
    pick = lambda seq: seq[draw(st.integers(0, len(seq) - 1))]  # noqa: E731
    with_params = [n for n in nodes if n["type"] in ("mlstm", "swiglu", "embedding", "lm_head")]
    if kind == "dangling_input":
        n = pick([n for n in nodes if n["inputs"]])
        n["inputs"][0] = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=12)) + "_missing"
    elif kind == "cycle":
        n = pick(nodes[1:])
        nodes[1]["inputs"] = [n["name"]] + nodes[1]["inputs"][1:]
        if n is nodes[1]:
            nodes[1]["inputs"] = [nodes[1]["name"]]
    elif kind == "wrong_type":
        n = pick(with_params)
        key = {"mlstm": "num_heads", "swiglu": "proj_factor", "embedding": "dim", "lm_head": "vocab_size"}[n["type"]]
        n[key] = draw(st.sampled_from([[1, 2], {"a": 1}, "not_a_number", True if key != "proj_factor" else "x"]))
    elif kind == "bad_heads":
        mlstms = [n for n in nodes if n["type"] == "mlstm"]
        if mlstms:
            pick(mlstms)["num_heads"] = 7 * spec["dims"]["d"] + 1
        else:
            nodes[0]["dim"] = 0
    elif kind == "unknown_block":
        pick(nodes)["type"] = draw(st.sampled_from(["mlstn", "rmsnorm", "attention_xyz", "LSTM", ""]))
    elif kind == "unknown_param":
        pick(nodes)[draw(st.sampled_from(["heads", "colour", "num_head", "dropout"]))] = 1
    elif kind == "missing_param":
        n = pick(with_params)
        n.pop({"mlstm": "num_heads", "swiglu": None, "embedding": "dim", "lm_head": "vocab_size"}[n["type"]] or "name")
    elif kind == "duplicate_name":
        a, b = nodes[0], pick(nodes[1:])
        b["name"] = a["name"]
    elif kind == "bad_output":
        spec["outputs"] = [draw(st.sampled_from(["logits", "lm_headd", "tokens", "emb.weight"]))]
    elif kind == "bad_yaml":
        text = yaml.safe_dump(spec, sort_keys=False)
        pos = draw(st.integers(0, max(0, len(text) - 1)))
        junk = draw(st.sampled_from([": [", "\t- ", "{", "]]", "- - -\n  ::", "\"unterminated", "&a *b", "\x00"]))
        broken = text[:pos] + junk + text[pos:]
        try:  # some insertions are still valid YAML (e.g. "{" inside a plain scalar): then break it for sure
            yaml.safe_load(broken)
            broken += "\nnodes: [unclosed, {\n"
        except yaml.YAMLError:
            pass
        return broken, kind
    elif kind == "drop_key":
        spec.pop(draw(st.sampled_from(["name", "nodes", "outputs"])))
    elif kind == "not_a_mapping":
        return draw(st.sampled_from([[], [1, 2], "just text", 42, None, {"nodes": "x"}])), kind
    elif kind == "bad_repeat":
        repeat = draw(st.sampled_from([0, -1, "nope", 1.5, 10**9]))
        spec["nodes"].insert(1, {"repeat": repeat, "name": "r.{i}", "nodes": []})
    elif kind == "width_mismatch":
        other = _node("other", "embedding", ["tokens"], num_embeddings="vocab", dim=spec["dims"]["d"] + 4)
        spec["nodes"].insert(1, other)
        adds = [n for n in nodes if n["type"] == "add"]
        target = pick(adds) if adds else nodes[-1]
        target["inputs"] = ["other"] + target["inputs"][1:] if target["type"] == "add" else ["other"]
        if target["type"] != "add":  # lm_head then reads a d+4 input: fine, so break an add we insert
            spec["nodes"].append(_node("mismatch", "add", ["other", "emb"]))
            spec["outputs"].append("mismatch")
    return spec, kind
