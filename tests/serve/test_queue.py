"""Requests wait for room in the batch; one that finds the queue full is answered 429 at once, one that waits or
generates past its timeout is answered 503 or ends its answer there, and the server serves on."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

from conftest import gated_server


def post(url, body, timeout=60):
    req = urllib.request.Request(f"{url}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def health(url):
    with urllib.request.urlopen(f"{url}/health", timeout=30) as r:
        return json.loads(r.read())


def wait_for(url, **want):
    deadline = time.time() + 30
    while any(health(url)[k] != v for k, v in want.items()):
        assert time.time() < deadline, (health(url), want)
        time.sleep(0.01)


def in_background(fn, *args):
    results = []
    thread = threading.Thread(target=lambda: results.append(fn(*args)))
    thread.start()
    return thread, results


BODY = {"model": "m", "prompt": [1, 2, 3], "max_tokens": 3, "temperature": 0}


def test_a_full_queue_answers_429_and_the_server_serves_on(small_runner):
    for url, gate in gated_server(small_runner, max_batch=1, max_queue=1):
        gate.open.clear()  # the model holds still: one request in the batch, one waits
        first, first_result = in_background(post, url, BODY)
        wait_for(url, batch=0, reading=1, queue=0)
        second, second_result = in_background(post, url, BODY)
        wait_for(url, queue=1)
        status, error = post(url, BODY)
        assert status == 429 and error["error"]["code"] == "queue_full" and "busy" in error["error"]["message"]
        gate.open.set()
        first.join(60), second.join(60)
        assert first_result[0][0] == second_result[0][0] == 200
        assert first_result[0][1]["choices"] == second_result[0][1]["choices"]
        assert post(url, BODY)[0] == 200
        wait_for(url, requests=0, batch=0, queue=0)


def test_a_request_that_waits_past_its_timeout_is_answered_503(small_runner):
    for url, gate in gated_server(small_runner, max_batch=1, request_timeout=1.0):
        gate.open.clear()
        first, result = in_background(post, url, BODY)
        wait_for(url, reading=1)
        status, error = post(url, BODY)
        assert status == 503 and error["error"]["code"] == "timeout" and "waited" in error["error"]["message"]
        gate.open.set()
        first.join(60)
        assert result[0][0] == 200  # (it was admitted in time; the model was slow)
        wait_for(url, requests=0, queue=0)


def test_an_answer_that_runs_past_its_timeout_ends_there(small_runner):
    for url, gate in gated_server(small_runner, delay=0.02, request_timeout=0.5):
        status, body = post(url, {**BODY, "max_tokens": 64})
        assert status == 200 and body["choices"][0]["finish_reason"] == "length"
        assert 1 <= body["usage"]["completion_tokens"] < 40  # 0.5 s at >= 20 ms a step
