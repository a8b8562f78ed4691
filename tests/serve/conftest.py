"""A live server over the shipped small model on a free port (uvicorn in a thread), and an ``openai`` client."""
from __future__ import annotations

import argparse
import socket
import threading
import time

import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

MODEL_ID = "small"
MAX_PROMPT_TOKENS = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(max_sessions_bytes: int):
    from xlstm_metal.cli.serve import build_app

    args = argparse.Namespace(model=None, model_id=MODEL_ID, dtype=None, max_sessions_bytes=max_sessions_bytes,
                              max_prompt_tokens=MAX_PROMPT_TOKENS, max_tokens=16, max_tokens_limit=64,
                              max_batch=8, max_queue=8, request_timeout=None)
    yield from run_app(build_app(args))


def run_app(app):
    """Serve ``app`` on a free port in a thread; yields its URL."""
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server():
    yield from _serve(10**9)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def uncached_client():
    """A second server that keeps no state: every request reads its whole prompt."""
    for url in _serve(0):
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


class Gate:
    """Wraps an engine's ``forward``: each call waits for ``open``, then ``delay`` seconds (so a test can hold the
    model or slow it down), and records the batch size it ran (``sizes``); ``fail`` makes the next call raise. Also
    records how many prompt tokens each ``read`` takes (``reads``)."""

    def __init__(self, engine, delay: float = 0.0):
        self.forward, self.read, self.delay = engine.forward, engine.read, delay
        self.sizes, self.reads, self.fail = [], [], False
        self.open = threading.Event()
        self.open.set()
        engine.forward, engine.read = self, self.reading

    def __call__(self, tokens, state):
        assert self.open.wait(60), "the test never opened the gate"
        time.sleep(self.delay)
        if self.fail:
            self.fail = False
            raise RuntimeError("the device fell over")
        self.sizes.append(int(tokens.shape[0]))
        return self.forward(tokens, state)

    def reading(self, tokens, state):
        self.reads.append(len(tokens))
        return self.read(tokens, state)


@pytest.fixture(scope="session")
def small_runner():
    from xlstm_metal.cli.generate import DEFAULT_MODEL
    from xlstm_metal.runner import xLSTMRunner

    return xLSTMRunner.from_pretrained(DEFAULT_MODEL)


def gated_server(runner, *, delay: float = 0.0, cache_bytes: int = 10**8, **app_kw):
    """A server over ``runner`` (served as model "m") whose model steps pass a ``Gate``; yields (url, gate)."""
    from xlstm_metal.serve.app import create_app
    from xlstm_metal.serve.cache import StateCache
    from xlstm_metal.serve.engine import Engine

    engine = Engine(runner, StateCache(cache_bytes), model_id="m", max_prompt_tokens=MAX_PROMPT_TOKENS)
    gate = Gate(engine, delay)
    for url in run_app(create_app(engine, **app_kw)):
        yield url, gate
