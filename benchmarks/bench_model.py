"""Prefill and decode throughput and prefill peak memory of a spec with random weights; prints one JSON object.

    python benchmarks/bench_model.py --spec xlstm_tiny --prefill 128,512 --decode-steps 64
    python benchmarks/bench_model.py --spec xlstm_7b --dtype bfloat16 --prefill 1024,4096,32768 \
        --decode-context 128,32768 --official official.json --quantize 4
    python benchmarks/bench_model.py --spec xlstm_7b --dims embedding_dim=512,num_heads=4,num_blocks=6,vocab_size=2048 \
        --prefill 256,1024 --official-torch --rounds 3        # CPU: ours and the official, in turns, one run
    python benchmarks/bench_model.py --serve --spec xlstm_7b --dtype bfloat16 --serve-clients 1,8,32

``--serve`` measures ``xlstm-metal serve`` over HTTP instead (the serve extra: starlette, uvicorn; the client side
is the standard library): time to first token at each turn of a conversation with the session state cache on and
off, and aggregate generated tokens/s with 1, 8, 32 concurrent clients sharing decode steps.

--official takes the JSON of official_baseline.py measured in the same GPU job and adds ratios; --official-torch
(CPU) builds the official xlstm's xLSTMLarge at the same dims (torch, float32, native kernels) and times it in
turns with ours. --quantize BITS also times the model after `runner.quantize(BITS)` (keys ending `_q<BITS>`).
Timed in `inference_mode`, as generation runs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time

import xlstm_metal  # noqa: F401  (before mlx.core: on Linux CPU it loads a fast BLAS for MLX)
import mlx.core as mx  # noqa: E402
from common import emit, sized_spec, spec_doc, timed, with_ratios
from mlx.utils import tree_flatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.kernels import current_device, inference_mode, kernels


def stream_tok_s(runner, tok, state, steps: int, warm: int = 5) -> float:
    """Greedy tokens/s of ``runner.stream`` from ``state``: ``steps`` tokens timed after ``warm`` untimed ones. Unlike
    ``step`` in ``main``, which evaluates every token before building the next, generation queues token t+1 before it
    reads token t (``mx.async_eval``), so the host's work overlaps the GPU's."""
    ids = [int(t) for t in tok[0].tolist()]
    last = None
    for k, resp in enumerate(runner.stream(ids, state=state, max_tokens=warm + steps, eos_token_ids=set())):
        if k == warm - 1:
            t0 = time.perf_counter()
        last = k
    assert last == warm + steps - 1, f"stream stopped after {last + 1} tokens"
    return steps / (time.perf_counter() - t0)


class OfficialTorch:
    """The official xlstm 2.0.6 ``xLSTMLarge`` at our spec's dims on torch CPU (float32, native kernels, random
    weights): prefill and decode callables timed in turns with ours."""

    def __init__(self, dims: dict, threads: int | None):
        import torch
        from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig

        if threads:
            torch.set_num_threads(threads)
        self.torch, self.vocab = torch, dims["vocab_size"]
        cfg = xLSTMLargeConfig(embedding_dim=dims["embedding_dim"], num_heads=dims["num_heads"],
                               num_blocks=dims["num_blocks"], vocab_size=self.vocab, mode="inference",
                               chunkwise_kernel="chunkwise--native_autograd", sequence_kernel="native_sequence__native",
                               step_kernel="native", return_last_states=True, chunk_size=dims.get("chunk_size", 64))
        torch.manual_seed(0)
        self.model = xLSTMLarge(cfg).float().eval()
        self.info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "kernels": "chunkwise--native_"
                     "autograd, native_sequence__native, native step", "params_B": sum(
                         p.numel() for p in self.model.parameters()) / 1e9}

    def prefill_tok_s(self, S: int, batch: int, iters: int) -> float:
        x = self.torch.randint(0, self.vocab, (batch, S))
        with self.torch.no_grad():
            return batch * S / timed(lambda: self.model(x), warm=1, iters=iters)

    def decode_tok_s(self, context: int, steps: int) -> float:
        """Greedy tokens/s from ``context`` tokens, each step's token fed back (as ``runner.stream`` decodes)."""
        with self.torch.no_grad():
            logits, state = self.model(self.torch.randint(0, self.vocab, (1, context)))
            holder = {"tok": logits[:, -1:].argmax(-1), "state": state}

            def step():
                logits, holder["state"] = self.model(holder["tok"], holder["state"])
                holder["tok"] = logits[:, -1:].argmax(-1)

            return 1 / timed(step, warm=5, iters=steps)


def in_turns(rates: dict, rounds: int) -> dict:
    """Median of each rate function over ``rounds`` rounds taking turns (order reversed every round), so drift of
    a shared machine hits all alike."""
    runs = {name: [] for name in rates}
    for r in range(max(1, rounds)):
        for name in (list(rates) if r % 2 == 0 else list(rates)[::-1]):
            runs[name].append(rates[name]())
    return {name: statistics.median(vals) for name, vals in runs.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dims", default="", help="comma-separated name=value replacing the spec's dims")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--prefill", default="128,512", help="comma-separated prompt lengths")
    p.add_argument("--decode-steps", type=int, default=64)
    p.add_argument("--decode-context", default="16", help="comma-separated context lengths before decoding")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--official", help="JSON file from official_baseline.py measured in the same run, for ratios")
    p.add_argument("--official-torch", action="store_true",
                   help="CPU: time the official xlstm's xLSTMLarge at the same dims (torch) in turns with ours")
    p.add_argument("--rounds", type=int, default=3, help="turns of ours and the official (--official-torch)")
    p.add_argument("--threads", type=int, help="CPU threads of torch and of MLX's BLAS (default: theirs)")
    p.add_argument("--quantize", type=int, help="also time prefill and decode after runner.quantize(BITS)")
    p.add_argument("--decode-rounds", type=int, default=3,
                   help="time each step kernel this many times, alternating their order; report the median")
    p.add_argument("--prefill-segments", default="",
                   help="also time prefill (and its peak memory) with these prefill segment lengths, e.g. 1024")
    p.add_argument("--prefill-kernels", default="",
                   help="also time prefill with these chunkwise kernels pinned (e.g. compiled_chunkwise), at the "
                        "default segment length and at each --prefill-segments length")
    p.add_argument("--differentiable", action="store_true",
                   help="time outside inference_mode: the compiled decode step traced with the fused kernels' "
                        "gradient wrapper (the prefill evaluates as it goes, so it runs them bare either way)")
    p.add_argument("--serve", action="store_true", help="measure the HTTP server instead (see above)")
    p.add_argument("--serve-turns", type=int, default=10, help="turns of the conversation")
    p.add_argument("--serve-turn-tokens", type=int, default=1024, help="new prompt tokens each turn")
    p.add_argument("--serve-clients", default="1,8,32", help="comma-separated numbers of concurrent clients")
    p.add_argument("--serve-prompt", type=int, default=128, help="prompt tokens of each concurrent client")
    p.add_argument("--serve-tokens", type=int, default=128, help="tokens each concurrent client generates")
    p.add_argument("--out", help="also write the JSON here")
    a = p.parse_args(argv)
    if a.serve:
        return measure_serve(a)
    with contextlib.nullcontext() if a.differentiable else inference_mode():
        return measure(a)


def prefill_fn(runner, x):
    def prefill():
        logits, state = runner(x, logits="last")
        mx.eval(logits, state.arrays())
    return prefill


def prefilled(runner, vocab: int, batch: int, ctx: int):
    """The next greedy token and the state after ``ctx`` random tokens, evaluated."""
    logits, state = runner(mx.random.randint(0, vocab, (batch, ctx)), logits="last")
    tok = mx.argmax(logits[:, -1], axis=-1)[:, None]
    mx.eval(tok, state.arrays())
    return tok, state


def weights_GB(runner) -> float:
    return sum(v.nbytes for _, v in tree_flatten(runner.model.parameters())) / 1e9


def measure(a) -> dict:
    spec = sized_spec(a.spec, a.dims)
    runner = xLSTMRunner.from_spec(spec, dtype=a.dtype, seed=0)
    for _, v in tree_flatten(runner.model.parameters()):  # materialise one tensor at a time
        mx.eval(v)
    weights = weights_GB(runner)
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    res = {"spec": a.spec, "dims": a.dims, "dtype": a.dtype, "device": str(mx.default_device()), "batch": a.batch,
           "inference_mode": not a.differentiable, "params_B": runner.num_parameters() / 1e9, "weights_GB": weights,
           "mlx": mx.__version__, "blas": xlstm_metal.fast_blas.loaded() or "bundled"}
    if a.threads:
        res["threads"] = a.threads
        xlstm_metal.fast_blas.set_threads(a.threads)
    official = None
    if a.official_torch:
        official = OfficialTorch((spec if isinstance(spec, dict) else spec_doc(spec))["dims"], a.threads)
        res["official"] = {"device": "cpu", **official.info}
    mlstm = [n for n in runner.graph.compute_nodes() if runner.graph.node(n)["block_cls"].kernel_family == "mlstm"]
    segments = [None] + [int(v) for v in filter(None, a.prefill_segments.split(","))]
    default_segment = runner.segment_len
    for S in map(int, a.prefill.split(",")):
        x = mx.random.randint(0, vocab, (a.batch, S))
        prefill = prefill_fn(runner, x)
        # the default selection, then each pinned chunkwise kernel, each at the default and the given segment lengths
        for name in [None] + list(filter(None, a.prefill_kernels.split(","))):
            runner.set_overrides({n: {"kernel": name} for n in mlstm} if name else {})
            for seg in segments:
                tag = (f"_{name}" if name else "") + (f"_segment{seg}" if seg else "")
                runner.set_segment_len(seg or default_segment)
                mx.reset_peak_memory()  # the peak of the first prefill at this length (it compiles) and the timed ones
                ours = lambda: a.batch * S / timed(prefill, warm=1, iters=a.iters)  # noqa: E731
                if official and not tag:
                    turns = in_turns({"ours": ours, "official": lambda: official.prefill_tok_s(S, a.batch, a.iters)},
                                     a.rounds)
                    res[f"prefill_tok_s_S{S}"], res["official"][f"prefill_tok_s_S{S}"] = turns["ours"], turns["official"]
                else:
                    res[f"prefill_tok_s_S{S}{tag}"] = ours()
                res[f"prefill_peak_GB_S{S}{tag}"] = mx.get_peak_memory() / 1e9
                res[f"prefill_peak_over_weights_GB_S{S}{tag}"] = res[f"prefill_peak_GB_S{S}{tag}"] - weights
        runner.set_segment_len(default_segment)
        runner.set_overrides({})
    step_kernels = [k.name for k in kernels("mlstm", "step")
                    if k.supports(device=current_device(), dtype=a.dtype) is None]
    res["step_kernels"] = step_kernels
    for ctx in map(int, a.decode_context.split(",")):
        tok, state = prefilled(runner, vocab, a.batch, ctx)
        holder = {"state": state, "tok": tok}

        def step():
            lg, st = runner(holder["tok"], holder["state"])
            holder["tok"] = mx.argmax(lg[:, -1], axis=-1)[:, None]
            holder["state"] = st
            mx.eval(holder["tok"], st.arrays())

        res[f"decode_tok_s_ctx{ctx}"] = a.batch / timed(step, warm=5, iters=a.decode_steps)  # default selection
        # Each available step kernel, pinned, in the same run: batch-1 decoding is noisy and drifts within a
        # run, so the kernels take turns (order reversed every round) and each reports its median round.
        runs = {name: [] for name in step_kernels}
        for r in range(max(1, a.decode_rounds)):
            for name in (step_kernels if r % 2 == 0 else step_kernels[::-1]):
                runner.set_overrides({n: {"kernel": name} for n in mlstm})
                holder.update(state=state, tok=tok)
                runs[name].append(a.batch / timed(step, warm=5, iters=a.decode_steps))
        for name, vals in runs.items():
            res[f"decode_tok_s_ctx{ctx}_{name}"] = statistics.median(vals)
            res[f"decode_tok_s_ctx{ctx}_{name}_rounds"] = vals
        runner.set_overrides({})
        if a.batch == 1:  # what a user of runner.stream sees: the next token queued while this one is read
            ours = lambda: stream_tok_s(runner, tok, state, a.decode_steps)  # noqa: E731
            key = f"decode_stream_tok_s_ctx{ctx}"
            if official and ctx == int(a.decode_context.split(",")[0]):
                turns = in_turns({"ours": ours, "official": lambda: official.decode_tok_s(ctx, a.decode_steps)},
                                 a.rounds)
                res[key], res["official"]["decode_tok_s"] = turns["ours"], turns["official"]
            else:
                res[key] = ours()
    if a.quantize:
        measure_quantized(a, runner, vocab, res)
    if a.official:
        with open(a.official) as fh:
            res["official"] = json.load(fh)
    if "official" in res:
        with_ratios(res, res["official"])
        first = f"decode_stream_tok_s_ctx{a.decode_context.split(',')[0]}"  # the official decodes from 16 tokens
        if first in res and res["official"].get("decode_tok_s"):
            res[f"ratio_{first}_ours_over_official"] = res[first] / res["official"]["decode_tok_s"]
    emit(res, a.out)
    return res


# ---------------------------------------------------------------------- --serve: the HTTP server

@contextlib.contextmanager
def serving(engine, **app_kw):
    """``create_app(engine)`` under uvicorn on a free port, in a thread; yields the port."""
    import socket
    import threading

    import uvicorn

    from xlstm_metal.serve.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(engine, **app_kw), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(60)


def complete(port: int, prompt: list[int], max_tokens: int) -> dict:
    """One greedy ``/v1/completions`` request (token ids), answered whole: its JSON."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("POST", "/v1/completions", json.dumps({"model": "bench", "prompt": prompt, "temperature": 0,
                                                           "max_tokens": max_tokens}),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        body = json.loads(r.read())
    finally:
        conn.close()
    assert r.status == 200, body
    return body


def conversation_ttft(port: int, a, vocab: int, seed: int) -> list[tuple[float, int]]:
    """Seconds to the first token (a one-token answer) and cached prompt tokens at each turn; each turn's prompt is
    the previous one plus ``serve_turn_tokens`` new tokens."""
    import random

    rng, prompt, out = random.Random(seed), [], []
    for _ in range(a.serve_turns):
        prompt = prompt + [rng.randrange(vocab) for _ in range(a.serve_turn_tokens)]
        t = time.perf_counter()
        body = complete(port, prompt, 1)
        out.append((time.perf_counter() - t, body["usage"]["prompt_tokens_details"]["cached_tokens"]))
    return out


def clients_tok_s(port: int, a, vocab: int, clients: int) -> float:
    """Generated tokens/s of ``clients`` concurrent requests (each its own prompt, ``serve_tokens`` long answers)."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(clients)
    prompts = [[rng.randrange(vocab) for _ in range(a.serve_prompt)] for _ in range(clients)]
    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        bodies = list(pool.map(lambda p: complete(port, p, a.serve_tokens), prompts))
    seconds = time.perf_counter() - t
    return sum(b["usage"]["completion_tokens"] for b in bodies) / seconds


def measure_serve(a) -> dict:
    """The server over a spec with random weights (no tokenizer: prompts are token ids, no EOS ends an answer)."""
    from xlstm_metal.serve.cache import StateCache
    from xlstm_metal.serve.engine import Engine

    runner = xLSTMRunner.from_spec(a.spec, dtype=a.dtype, seed=0)
    for _, v in tree_flatten(runner.model.parameters()):
        mx.eval(v)
    vocab = runner.vocab_size
    state_bytes = runner.init_state(1).nbytes
    clients = [int(c) for c in a.serve_clients.split(",")]
    res = {"spec": a.spec, "dtype": a.dtype, "device": str(mx.default_device()), "mlx": mx.__version__,
           "state_MB": state_bytes / 1e6, "turns": a.serve_turns, "turn_tokens": a.serve_turn_tokens,
           "client_prompt_tokens": a.serve_prompt, "client_tokens": a.serve_tokens}
    limits = dict(max_prompt_tokens=a.serve_turns * a.serve_turn_tokens, model_id="bench")
    for cached in (True, False):
        # room for every turn's two states (the prompt's prefix, prompt + answer) of both passes
        cache = StateCache(4 * a.serve_turns * state_bytes if cached else 0)
        with serving(Engine(runner, cache, **limits), max_batch=max(clients), limit_max_tokens=a.serve_tokens,
                     max_queue=max(clients)) as port:
            conversation_ttft(port, a, vocab, seed=1)  # untimed: every prompt length's first run compiles
            turns = conversation_ttft(port, a, vocab, seed=2)
            tag = "cache" if cached else "nocache"
            res[f"ttft_s_{tag}"] = [t for t, _ in turns]
            res[f"cached_tokens_{tag}"] = [c for _, c in turns]
            if cached:
                for c in clients:
                    clients_tok_s(port, a, vocab, c)  # untimed: each batch size's first steps compile
                    res[f"tok_s_clients{c}"] = clients_tok_s(port, a, vocab, c)
    emit(res, a.out)
    return res
def measure_quantized(a, runner, vocab: int, res: dict) -> None:
    """Prefill at each length and ``runner.stream`` decoding after ``runner.quantize(a.quantize)``, keys ``_q<bits>``;
    the active memory right after quantize returns, against the packed weights."""
    tag = f"_q{a.quantize}"
    res[f"active_before_quantize_GB{tag}"] = mx.get_active_memory() / 1e9  # the float weights and a few states
    runner.quantize(a.quantize)
    res[f"weights_GB{tag}"] = weights_GB(runner)
    res[f"active_after_quantize_GB{tag}"] = mx.get_active_memory() / 1e9
    for S in map(int, a.prefill.split(",")):
        prefill = prefill_fn(runner, mx.random.randint(0, vocab, (a.batch, S)))
        mx.reset_peak_memory()
        res[f"prefill_tok_s_S{S}{tag}"] = a.batch * S / timed(prefill, warm=1, iters=a.iters)
        res[f"prefill_peak_GB_S{S}{tag}"] = mx.get_peak_memory() / 1e9
    if a.batch == 1:
        for ctx in map(int, a.decode_context.split(",")):
            tok, state = prefilled(runner, vocab, a.batch, ctx)
            res[f"decode_stream_tok_s_ctx{ctx}{tag}"] = stream_tok_s(runner, tok, state, a.decode_steps)


if __name__ == "__main__":
    main()
