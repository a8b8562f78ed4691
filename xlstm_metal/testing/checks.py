"""Parity checks for any architecture: on seeded random inputs, two paths that must agree (chunkwise prefill vs
token-by-token decoding, one prefill vs a split one, a padded batch vs each row alone) and their worst difference.
``assert_*`` raise with a readable table; ``verify`` runs them all for ``xlstm-metal verify``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

from ..graph import format_table
from ..kernels.gpu import max_error

DEFAULT_RTOL = 2e-5  # float32, whole model: relative to the largest |logit| (or state entry)


@dataclass
class CheckResult:
    name: str
    passed: bool
    max_abs: float
    max_rel: float
    rtol: float
    detail: str = ""


@dataclass
class VerifyReport:
    spec: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def __str__(self) -> str:
        rows = [("check", "result", "worst abs", "worst rel", "tolerance", "detail")]
        rows += [(r.name, "pass" if r.passed else "FAIL", f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", f"{r.rtol:.0e}",
                  r.detail) for r in self.results]
        verdict = "PASSED" if self.passed else "FAILED"
        passed = sum(r.passed for r in self.results)
        return f"verify {self.spec}: {verdict} ({passed}/{len(self.results)} checks)\n" + format_table(rows)


def as_runner(spec_or_runner: Any, *, seed: int = 0, dtype: str = "float32"):
    from xlstm_metal.runner import xLSTMRunner

    if isinstance(spec_or_runner, xLSTMRunner):
        return spec_or_runner
    return xLSTMRunner.from_spec(spec_or_runner, seed=seed, dtype=dtype)


def input_vocab(runner) -> int:
    """Token ids the model accepts: the smallest embedding table reading a graph input."""
    g = runner.graph
    sizes = [getattr(g.node(n)["params"], "num_embeddings", None) for n in g.compute_nodes()
             if set(g.node(n)["spec"].inputs) & set(g.inputs)]
    sizes = [s for s in sizes if s]
    if not sizes:
        raise ValueError("the graph has no embedding reading its token input; cannot draw token ids")
    return min(sizes)


def random_tokens(runner, batch: int, seq_len: int, seed: int) -> mx.array:
    rng = np.random.default_rng(seed)
    return mx.array(rng.integers(0, input_vocab(runner), size=(batch, seq_len)), dtype=mx.int32)


def _compare(name, pairs, rtol, detail="") -> CheckResult:
    """``pairs`` of results that must agree, within ``rtol`` (``kernels.gpu.max_error``: NaN/inf never pass)."""
    got, want = zip(*pairs)
    worst_abs, worst_rel = max_error(list(got), list(want))
    if not np.isfinite(worst_rel):
        return CheckResult(name, False, worst_abs, worst_rel, rtol, (detail + " NaN/inf or shape mismatch").strip())
    return CheckResult(name, worst_rel <= rtol, worst_abs, worst_rel, rtol, detail)


def _with_overrides(runner, kernel: str | None, chunk_size: int | None):
    """Overrides that force every kernel-using node onto one form / chunk size."""
    o = {k: v for k, v in (("kernel", kernel), ("chunk_size", chunk_size)) if v}
    g = runner.graph
    return {n: dict(o) for n in g.compute_nodes() if g.node(n)["block_cls"].kernel_family}


def decode_token_by_token(runner, tokens: mx.array, state=None):
    """Feed ``tokens [B, S]`` one at a time: logits ``[B, S, V]`` (None for S = 0) and the final state."""
    logits = []
    for t in range(tokens.shape[1]):
        lg, state = runner(tokens[:, t:t + 1], state)
        logits.append(lg)
    return (mx.concatenate(logits, axis=1) if logits else None), state


def check_chunkwise_matches_step(spec_or_runner, *, batch: int = 2, seq_len: int = 37, chunk_sizes=(1, 5, 16, 64),
                                 seed: int = 0, rtol: float = DEFAULT_RTOL,
                                 with_initial_state: bool = True) -> list[CheckResult]:
    runner = as_runner(spec_or_runner, seed=seed)
    tokens = random_tokens(runner, batch, seq_len, seed)
    start = None
    if with_initial_state:  # start from a non-trivial state, as after an earlier prompt
        _, start = runner(random_tokens(runner, batch, 7, seed + 1))
    step_logits, step_state = decode_token_by_token(runner, tokens, start)
    saved = runner.overrides
    results = []
    try:
        for kernel, chunks in (("chunkwise", chunk_sizes), ("sequence", (None,))):
            for L in chunks:
                runner.set_overrides(_with_overrides(runner, kernel, L))
                logits, state = runner(tokens, start)
                label = f"{kernel}{'' if L is None else f' L={L}'} == step"
                pairs = [(logits, step_logits)] + list(zip(state.arrays(), step_state.arrays()))
                results.append(_compare(label, pairs, rtol, f"B={batch} S={seq_len} seed={seed}"))
    finally:
        runner.set_overrides(saved)
    return results


def check_state_passing(spec_or_runner, *, batch: int = 2, seq_len: int = 40, splits=(1, 17, 39), seed: int = 0,
                        rtol: float = DEFAULT_RTOL) -> list[CheckResult]:
    runner = as_runner(spec_or_runner, seed=seed)
    tokens = random_tokens(runner, batch, seq_len, seed)
    full, full_state = runner(tokens)
    results = []
    for cut in splits:
        if not 0 < cut < seq_len:
            continue
        a, st = runner(tokens[:, :cut])
        b, st = runner(tokens[:, cut:], st)
        results.append(_compare(f"prefill split at {cut} == one prefill",
                                [(mx.concatenate([a, b], axis=1), full)] + list(zip(st.arrays(), full_state.arrays())),
                                rtol, f"B={batch} S={seq_len} seed={seed}"))
    return results


def check_padding_invariance(spec_or_runner, *, lengths=(5, 12), pad_id: int = 0, seed: int = 0,
                             decode_steps: int = 3, rtol: float = DEFAULT_RTOL) -> list[CheckResult]:
    """Left-pad rows of different lengths into one batch (with a mask): each row's logits, and its
    logits while decoding on from the batch's state, equal that row run alone. Raw states are
    compared too where their layout does not depend on length (not for a KV cache)."""
    runner = as_runner(spec_or_runner, seed=seed)
    rows = [random_tokens(runner, 1, n, seed + k) for k, n in enumerate(lengths)]
    S = max(lengths)
    batch = mx.concatenate([mx.concatenate([mx.full((1, S - n), pad_id, mx.int32), r], axis=1) if n < S else r
                            for r, n in zip(rows, lengths)], axis=0)
    mask = mx.array(np.array([[False] * (S - n) + [True] * n for n in lengths]))
    logits, state = runner(batch, mask=mask)
    nxt = random_tokens(runner, len(lengths), decode_steps, seed + 99)
    decoded, _ = decode_token_by_token(runner, nxt, state)
    fixed = all(runner.graph.node(n)["block_cls"].fixed_size_state for n in runner.graph.stateful_nodes())
    pairs = []
    for k, (r, n) in enumerate(zip(rows, lengths)):
        alone, st_alone = runner(r)
        pairs.append((logits[k:k + 1, S - n:], alone))
        if fixed:
            pairs.extend(zip(state.select([k]).arrays(), st_alone.arrays()))
        alone_decoded, _ = decode_token_by_token(runner, nxt[k:k + 1], st_alone)
        pairs += [(decoded[k:k + 1, t:t + 1], alone_decoded[:, t:t + 1]) for t in range(decode_steps)]
    return [_compare("left-padded batch == each row alone", pairs, rtol, f"lengths={list(lengths)} seed={seed}")]


def _raise_if_failed(results: list[CheckResult], spec_or_runner) -> list[CheckResult]:
    g = getattr(spec_or_runner, "graph", None)
    report = VerifyReport(g.name if g is not None else str(spec_or_runner)[:60], results)
    if not report.passed:
        raise AssertionError(str(report))
    return results


def assert_chunkwise_matches_step(spec_or_runner, **kw) -> list[CheckResult]:
    """Chunkwise (any chunk size) and sequence prefill equal token-by-token decoding: logits and final state."""
    return _raise_if_failed(check_chunkwise_matches_step(spec_or_runner, **kw), spec_or_runner)


def assert_state_passing(spec_or_runner, **kw) -> list[CheckResult]:
    """Splitting a prompt anywhere and carrying the state equals one prefill."""
    return _raise_if_failed(check_state_passing(spec_or_runner, **kw), spec_or_runner)


def assert_padding_invariance(spec_or_runner, **kw) -> list[CheckResult]:
    """Left padding with a mask changes nothing: each row of a padded batch equals that row alone."""
    return _raise_if_failed(check_padding_invariance(spec_or_runner, **kw), spec_or_runner)


def verify(spec_or_runner, *, seeds=(0, 1), seq_len: int = 37, chunk_sizes=(1, 5, 16, 64),
           rtol: float = DEFAULT_RTOL, dtype: str = "float32") -> VerifyReport:
    """All parity checks on one architecture (what ``xlstm-metal verify SPEC`` runs); ``dtype``: of a spec's weights."""
    results: list[CheckResult] = []
    name = None
    for seed in seeds:  # each seed: fresh random weights (for a spec) and fresh inputs
        runner = as_runner(spec_or_runner, seed=seed, dtype=dtype)
        name = runner.graph.name
        results += check_chunkwise_matches_step(runner, seq_len=seq_len, chunk_sizes=chunk_sizes, seed=seed,
                                                rtol=rtol)
        results += check_state_passing(runner, seq_len=seq_len + 3, seed=seed, rtol=rtol)
        results += check_padding_invariance(runner, seed=seed, rtol=rtol)
    return VerifyReport(name or "?", results)
