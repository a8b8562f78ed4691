"""Requests take turns; one that finds the queue full is answered 429 at once, and the server serves on."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

from conftest import run_app

from xlstm_metal.serve.app import create_app
from xlstm_metal.serve.cache import StateCache
from xlstm_metal.serve.engine import Piece


class BlockingEngine:
    """An engine whose completions wait for ``release`` (so a test can hold the server busy)."""

    def __init__(self):
        self.runner = SimpleNamespace(tokenizer=None)
        self.cache, self.model_id, self.release = StateCache(0), "fake", threading.Event()

    def encode(self, prompt, add_bos=None):
        return list(prompt)

    def complete(self, ids, sampling, stop=(), request_id=None, deadline=None):
        assert self.release.wait(30)
        yield Piece("done", "stop", len(ids), 1, 0)


def post(url, body):
    req = urllib.request.Request(f"{url}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def health(url):
    with urllib.request.urlopen(f"{url}/health", timeout=30) as r:
        return json.loads(r.read())


def test_a_full_queue_answers_429_and_the_server_serves_on():
    engine = BlockingEngine()
    for url in run_app(create_app(engine, max_queue=1)):
        body = {"model": "fake", "prompt": [1, 2]}
        results = []
        threads = [threading.Thread(target=lambda: results.append(post(url, body))) for _ in range(2)]
        for running, t in enumerate(threads, 1):  # one runs, one waits
            t.start()
            deadline = time.time() + 30
            while health(url)["requests"] < running:
                assert time.time() < deadline
                time.sleep(0.01)
        status, error = post(url, body)
        assert status == 429 and error["error"]["code"] == "queue_full" and "busy" in error["error"]["message"]
        engine.release.set()
        for t in threads:
            t.join(30)
        assert [s for s, _ in results] == [200, 200]
        assert post(url, body)[0] == 200 and health(url)["requests"] == 0
        break


def test_a_request_that_waits_past_its_timeout_is_answered_503():
    engine = BlockingEngine()
    for url in run_app(create_app(engine, request_timeout=0.5)):
        body = {"model": "fake", "prompt": [1]}
        results = []
        first = threading.Thread(target=lambda: results.append(post(url, body)))
        first.start()
        deadline = time.time() + 30
        while health(url)["requests"] < 1:
            assert time.time() < deadline
            time.sleep(0.01)
        status, error = post(url, body)
        assert status == 503 and error["error"]["code"] == "timeout"
        engine.release.set()
        first.join(30)
        assert results[0][0] == 200
        break


def test_an_answer_that_runs_past_the_deadline_ends_there():
    from xlstm_metal.cli.generate import DEFAULT_MODEL
    from xlstm_metal.runner import xLSTMRunner
    from xlstm_metal.serve.engine import Engine
    from xlstm_metal.serve.params import Sampling

    engine = Engine(xLSTMRunner.from_pretrained(DEFAULT_MODEL), StateCache(10**8), model_id="m", max_prompt_tokens=99)
    pieces = list(engine.complete([1, 2, 3], Sampling(max_tokens=50, temperature=0.0), deadline=time.monotonic()))
    assert pieces[-1].finish_reason == "length" and pieces[-1].completion_tokens == 1
    whole = list(engine.complete([1, 2, 3], Sampling(max_tokens=50, temperature=0.0), deadline=None))
    assert whole[-1].completion_tokens > 1
