"""Continuous batching: one thread owns the model; requests join the running batch between decode steps.

Each loop: admit waiting requests while the batch has room, read admitted prompts (resuming from the session state
cache; while others decode, at most ``prefill_chunk`` tokens per loop, so a long prompt does not stall them), then
one decode step for every row. A request's ``n`` choices are ``n`` rows sharing one prompt's state. A row whose
client has gone leaves at the next token; a finished row leaves with its state cached. Events go to each request's
handler through its ``send`` (thread-safe): ("start",), ("piece", index, text, finish), ("done", usage),
("error", APIError)."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import mlx.core as mx

from ..errors import InputError
from ..generation.generate import TextStream
from .batch import Batch, Row, stack
from .errors import APIError
from .params import Sampling

log = logging.getLogger("xlstm_metal.serve")


@dataclass
class Job:
    """One request: prompt ``ids``, its sampling and ``n`` choices; ``cancelled`` is set when its client leaves."""
    id: str
    ids: list[int]
    sampling: Sampling
    send: Callable[[tuple], None]
    stop: list[str] = field(default_factory=list)
    deadline: float | None = None  # time.monotonic(): past it, waiting is refused and generating ends
    cancelled: bool = False
    cached: int = 0  # prompt tokens resumed from the cache
    read: int = 0  # prompt tokens whose state ``state`` holds
    state: object = None
    rows_left: int = 0
    completion_tokens: int = 0
    started: float = 0.0

    def usage(self) -> dict:
        return {"prompt_tokens": len(self.ids), "completion_tokens": self.completion_tokens,
                "total_tokens": len(self.ids) + self.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": self.cached}}


class Scheduler:
    """Runs ``engine``'s model for every request: ``submit(job)`` (a full queue raises a 429 ``APIError``),
    ``load()`` for /health, ``stop()``. ``max_batch`` rows decode together; ``max_queue`` requests may wait for
    room beyond those the batch can take at once."""

    def __init__(self, engine, *, max_batch: int = 32, max_queue: int = 64, prefill_chunk: int | None = None):
        self.engine, self.max_batch, self.max_queue = engine, int(max_batch), int(max_queue)
        self.prefill_chunk = prefill_chunk or engine.runner.segment_len or 2048
        self.batch = Batch(engine.forward)
        self.waiting: deque[Job] = deque()
        self.reading: list[Job] = []  # admitted: their prompts are being read
        self._lock, self._wake = threading.Lock(), threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ called from the server's event loop
    def submit(self, job: Job) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="xlstm-serve-model", daemon=True)
                self._thread.start()
            room = max(0, self.max_batch - self._rows_taken())
            if len(self.waiting) >= self.max_queue + room:
                raise APIError(f"the server is busy: {len(self.waiting)} requests are waiting for room in the "
                               f"batch (at most {self.max_queue} may wait); retry later", status=429,
                               type="rate_limit_error", code="queue_full")
            self.waiting.append(job)
        self._wake.set()

    def load(self) -> dict:
        running = {id(r.job) for r in self.batch.rows}
        return {"requests": len(self.waiting) + len(self.reading) + len(running), "batch": len(self.batch.rows),
                "reading": len(self.reading), "queue": len(self.waiting)}

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # ------------------------------------------------------------------ the model's thread
    def _rows_taken(self) -> int:
        return len(self.batch.rows) + sum(j.sampling.n for j in self.reading)

    def _loop(self) -> None:
        try:
            self._serve()
        finally:  # MLX streams are per thread: release this one's, or the process may abort at exit
            mx.clear_streams()

    def _serve(self) -> None:
        while not self._stopping:
            self._wake.clear()
            if not (self.batch.rows or self.reading or self.waiting):
                self._wake.wait()
                continue
            try:
                self._admit()
                self._read_prompts()
                if self.batch.rows:
                    self._decode()
            except Exception as exc:  # noqa: BLE001 - a failed shared step fails its requests; the server serves on
                log.exception("the decode step failed")
                self._fail_running(exc)

    def _admit(self) -> None:
        with self._lock:
            while self.waiting:
                job = self.waiting[0]
                if job.cancelled:
                    self.waiting.popleft()
                    continue
                if self._rows_taken() + job.sampling.n > self.max_batch:
                    break
                self.waiting.popleft()
                job.started = time.perf_counter()
                job.cached, job.state = self.engine.cache.longest_prefix(job.ids)
                job.read = job.cached
                self.reading.append(job)
                job.send(("start",))

    def _read_prompts(self) -> None:
        """Read admitted prompts up to their last token (within the chunk budget while rows decode); a prompt
        read completely joins the batch with its last token's logits."""
        budget = self.prefill_chunk if self.batch.rows else None
        for job in list(self.reading):
            if job.cancelled:
                self.reading.remove(job)
                self._log(job, "client left")
                continue
            if budget == 0:
                break
            try:
                budget = self._read(job, budget)
            except Exception as exc:  # noqa: BLE001 - this request fails, the others go on
                self.reading.remove(job)
                job.send(("error", _api_error(exc)))
                self._log(job, "failed")

    def _read(self, job: Job, budget: int | None) -> int | None:
        end = len(job.ids) - 1  # the last prompt token is read with the batch's shape: its logits start the answer
        take = end - job.read if budget is None else min(end - job.read, budget)
        if take > 0:
            job.state = self.engine.read(job.ids[job.read:job.read + take], job.state)
            job.read += take
            if job.read == end:
                self.engine.cache.put(job.ids[:end], job.state)  # the prompt's prefix: a retry resumes here
        if job.read < end:
            return 0
        logits, state = self.engine.forward(mx.array([job.ids[-1:]], dtype=mx.int32), job.state)
        n, s = job.sampling.n, job.sampling
        tokenizer, eos = self.engine.runner.tokenizer, self.engine.runner.eos_token_ids
        rows = [Row(job, j, s.max_tokens, s.temperature, s.top_p, TextStream(tokenizer, s.stop + job.stop, eos),
                    seed=None if s.seed is None else (s.seed + j) % 2**31) for j in range(n)]
        job.rows_left, job.state = n, None
        self.reading.remove(job)
        self.batch.join(rows, stack([state] * n), mx.repeat(logits, n, axis=0) if n > 1 else logits)
        return None if budget is None else budget - max(take, 0)

    def _decode(self) -> None:
        batch = self.batch
        tokens = batch.step()
        keep, done = [], []
        for i, (row, token) in enumerate(zip(batch.rows, tokens)):
            job = row.job
            if job.cancelled:
                done.append((row, None))
                continue
            piece, finish = row.add(token, job.deadline)
            if piece or finish:
                job.send(("piece", row.index, piece, finish))
            if finish:  # its state has read the whole answer: the next turn of the conversation resumes from it
                done.append((row, batch.row_state(i)))
            else:
                keep.append(i)
        batch.keep(keep)
        for row, state in done:
            job = row.job
            if state is not None:
                self.engine.cache.put(job.ids + row.tokens, state)
            job.completion_tokens += len(row.tokens)
            job.rows_left -= 1
            if job.rows_left == 0:
                self._log(job, "client left" if job.cancelled else None)
                if not job.cancelled:
                    job.send(("done", job.usage()))

    def _fail_running(self, exc: Exception) -> None:
        error = _api_error(exc)
        jobs = {id(r.job): r.job for r in self.batch.rows} | {id(j): j for j in self.reading}
        for job in jobs.values():
            job.send(("error", error))
        self.batch = Batch(self.engine.forward)
        self.reading = []

    def _log(self, job: Job, note: str | None) -> None:
        seconds = time.perf_counter() - job.started
        cache = self.engine.cache
        log.info("request %s: %d prompt tokens (%d cached), %d generated, %.1f tok/s, %.2f s, batch %d, cache %d "
                 "states %.1f MB%s", job.id, len(job.ids), job.cached, job.completion_tokens,
                 job.completion_tokens / max(seconds, 1e-9), seconds, len(self.batch.rows), len(cache),
                 cache.nbytes / 1e6, f" ({note})" if note else "")


def _api_error(exc: Exception) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, InputError):
        return APIError(str(exc))
    return APIError(f"the model failed on this request: {type(exc).__name__}: {exc}", status=500,
                    type="server_error")
