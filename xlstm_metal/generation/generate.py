"""Generation as a chain: ``generate_step`` (tokens) → ``stream_generate`` (responses) → ``generate`` (text).

A model is any ``model_fn(tokens [B,S], state, mask=None) -> (logits [B,S',V], state)``; only the last
position's logits are used. The state after every token is handed out, so a caller can continue later.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import mlx.core as mx
import numpy as np

from xlstm_metal.modes import inference_mode

from ..errors import InputError
from ..memory import format_bytes
from ..token_ids import as_tokens
from .sampling import make_logits_processors, make_sampler


@dataclass
class GenerationResponse:
    text: str
    token: int
    logprobs: mx.array
    prompt_tokens: int
    prompt_tps: float
    generation_tokens: int
    generation_tps: float
    peak_memory: float  # GB
    finish_reason: str | None
    state: Any = None


def generate_step(model_fn: Callable, prompt, *, state=None, sampler=None, logits_processors=None,
                  max_tokens: int = 256, seed: int | None = None,
                  prompt_mask=None) -> Iterator[tuple[mx.array, mx.array, Any]]:
    """Yield ``(token [B], logprobs [B,V], state)`` per generated token; ``state`` includes that token."""
    if max_tokens < 0:
        raise InputError(f"max_tokens must be an integer >= 0, got {max_tokens!r}")
    sampler = sampler or make_sampler()
    processors = logits_processors or []
    tokens = as_tokens(prompt, what="the prompt")  # (the model checks its vocabulary)
    key = mx.random.key(seed if seed is not None else secrets.randbits(31))
    history = tokens

    def sample(logits):
        nonlocal key, history
        lg = logits[:, -1, :].astype(mx.float32)
        for proc in processors:
            lg = proc(history, lg)
        logprobs = lg - mx.logsumexp(lg, axis=-1, keepdims=True)
        key, sub = mx.random.split(key)
        tok = sampler(logprobs, sub).astype(mx.int32)
        history = mx.concatenate([history, tok[:, None]], axis=1)
        return tok, logprobs

    with inference_mode():  # nothing here is differentiated: the fused kernels run bare
        logits, state = model_fn(tokens, state, prompt_mask)
    y, lp = sample(logits)
    mx.async_eval(y, lp)
    for _ in range(max_tokens):
        with inference_mode():  # (per call: the mode must not stay on while this generator is suspended)
            logits, state = model_fn(y[:, None], state, None)  # queued while the caller handles y
        next_y, next_lp = sample(logits)
        mx.async_eval(next_y, next_lp)
        yield y, lp, state
        y, lp = next_y, next_lp


def _stop_hold(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters could be the start of a stop string (so must be held back)."""
    return max((n for s in stops for n in range(1, min(len(s) - 1, len(text)) + 1) if text.endswith(s[:n])),
               default=0)


def _cut(text: str, sent: int, stops: Sequence[str]) -> tuple[str, bool]:
    """The unsent text up to the first stop string (and whether one was found)."""
    first = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    if first >= 0:
        return text[sent:first] if first > sent else "", True
    return text[sent:], False


class TextStream:
    """One answer's text as its tokens arrive: detokenized incrementally (an EOS token is not text), cut before the
    first stop string, a tail that could begin one held back until it cannot."""

    def __init__(self, tokenizer, stops: Sequence[str] = (), eos: set[int] = frozenset()):
        self.detok = tokenizer.detokenizer() if tokenizer is not None and hasattr(tokenizer, "detokenizer") else None
        self.stops, self.eos = [s for s in stops if s], eos
        self.text, self.sent = "", 0  # all generated text, characters handed out

    def add(self, token: int, last: bool = False) -> tuple[str, str | None]:
        """The text to hand out after ``token`` and the finish reason: "stop" at EOS or a stop string, "length" when
        ``last`` (no more tokens will come), else None."""
        finish = "stop" if token in self.eos else "length" if last else None
        if self.detok is not None:
            self.text += "" if token in self.eos else self.detok.add_token(token)
            self.text += self.detok.finalize() if finish else ""
        cut, hit = _cut(self.text, self.sent, self.stops)
        if hit or finish:
            self.sent = len(self.text)
            return cut, "stop" if hit else finish
        safe = len(self.text) - _stop_hold(self.text, self.stops)
        piece = self.text[self.sent:safe] if safe > self.sent else ""
        self.sent = max(self.sent, safe)
        return piece, None


def _eos_ids(tokenizer, eos_token_ids) -> set[int]:
    return set(eos_token_ids if eos_token_ids is not None else getattr(tokenizer, "eos_token_ids", ()) or ())


def stream_generate(model_fn: Callable, tokenizer, prompt, *, max_tokens: int = 256, sampler=None,
                    temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, min_p: float = 0.0,
                    repetition_penalty: float | None = None, repetition_context_size: int = 20,
                    seed: int | None = None, stop: Sequence[str] | None = None, eos_token_ids: set[int] | None = None,
                    state=None, logits_processors=None) -> Iterator[GenerationResponse]:
    """Stream ``GenerationResponse`` for one prompt (text or token ids)."""
    if isinstance(prompt, str):
        if tokenizer is None:
            raise InputError("a text prompt needs a tokenizer; pass token ids or load a model with tokenizer.json")
        ids = tokenizer.encode(prompt)
    else:
        ids = [int(t) for t in (prompt.tolist() if isinstance(prompt, mx.array) else prompt)]
    sampler = sampler or make_sampler(temperature, top_p, top_k, min_p)
    processors = list(logits_processors or []) + make_logits_processors(repetition_penalty, repetition_context_size)
    text = TextStream(tokenizer, stop or [], _eos_ids(tokenizer, eos_token_ids))
    t0 = time.perf_counter()
    prompt_tps = gen_start = None
    steps = generate_step(model_fn, ids, state=state, sampler=sampler, logits_processors=processors,
                          max_tokens=max_tokens, seed=seed)
    for n, (tok, logprobs, st) in enumerate(steps, 1):
        token = int(tok.item())
        if gen_start is None:
            gen_start = time.perf_counter()
            prompt_tps = len(ids) / max(gen_start - t0, 1e-9)
        tps = (n - 1) / max(time.perf_counter() - gen_start, 1e-9) if n > 1 else 0.0
        piece, finish = text.add(token, last=n == max_tokens)
        yield GenerationResponse(text=piece, token=token, logprobs=logprobs[0], prompt_tokens=len(ids),
                                 prompt_tps=prompt_tps, generation_tokens=n, generation_tps=tps,
                                 peak_memory=mx.get_peak_memory() / 1e9, finish_reason=finish, state=st)
        if finish:
            return


def generate(model_fn: Callable, tokenizer, prompt, *, verbose: bool = False, **kw) -> str:
    """The whole generated text (``verbose`` prints it as it streams, then speed and memory)."""
    pieces, last = [], None
    for last in stream_generate(model_fn, tokenizer, prompt, **kw):
        pieces.append(last.text)
        if verbose:
            print(last.text, end="", flush=True)
    if verbose and last is not None:
        print(f"\n\nprompt: {last.prompt_tokens} tokens, {last.prompt_tps:.1f} tok/s; generation: "
              f"{last.generation_tokens} tokens, {last.generation_tps:.1f} tok/s; "
              f"peak memory {format_bytes(last.peak_memory * 1e9)}")
    return "".join(pieces)


def batch_generate(model_fn: Callable, tokenizer, prompts: list, *, max_tokens: int = 64, pad_id: int = 0,
                   sampler=None, temperature: float = 0.0, seed: int | None = None,
                   eos_token_ids: set[int] | None = None) -> list:
    """Generate for prompts of different lengths at once (left padding, masked out of the state).

    Returns token lists for token prompts, texts for text prompts; each row stops at its own EOS.
    """
    as_text = all(isinstance(p, str) for p in prompts)
    ids = [tokenizer.encode(p) if isinstance(p, str) else [int(t) for t in p] for p in prompts]
    if not ids or any(len(r) == 0 for r in ids):
        raise InputError("every prompt needs at least one token")
    S = max(len(r) for r in ids)
    batch = mx.array(np.array([[pad_id] * (S - len(r)) + r for r in ids], dtype=np.int32))
    mask = mx.array(np.array([[False] * (S - len(r)) + [True] * len(r) for r in ids]))
    eos = _eos_ids(tokenizer, eos_token_ids)
    out: list[list[int]] = [[] for _ in ids]
    done = [False] * len(ids)
    sampler = sampler or make_sampler(temperature)
    steps = generate_step(model_fn, batch, sampler=sampler, max_tokens=max_tokens, seed=seed, prompt_mask=mask)
    for tok, _, _ in steps:
        for row, t in enumerate(tok.tolist()):
            if done[row]:
                continue
            if t in eos:
                done[row] = True
            else:
                out[row].append(int(t))
        if all(done):
            break
    return [tokenizer.decode(r) for r in out] if as_text else out
