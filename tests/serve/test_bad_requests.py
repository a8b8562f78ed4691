"""Each bad request gets an OpenAI-style error object with a 4xx status naming the problem; the server keeps
serving the next request."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

MODEL_ID = "small"  # the name the test server serves (conftest.py)
MAX_PROMPT_TOKENS = 200  # the test server's limit (conftest.py)
CHAT = {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def post(server, path: str, data: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(f"{server}{path}", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def assert_error(status, body, expected_status, *words, param=None):
    assert status == expected_status, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert all(w in error["message"] for w in words), error["message"]
    if param is not None:
        assert error["param"] == param


def test_malformed_json(server):
    assert_error(*post(server, "/v1/chat/completions", b'{"model": "small", "messages": ['), 400, "not valid JSON")
    assert_error(*post(server, "/v1/completions", b'[1, 2]'), 400, "JSON object")


def test_unknown_model(server):
    status, body = post(server, "/v1/chat/completions", json.dumps({**CHAT, "model": "gpt-9"}).encode())
    assert_error(status, body, 404, "gpt-9", MODEL_ID, param="model")
    assert body["error"]["code"] == "model_not_found"
    assert_error(*post(server, "/v1/completions", json.dumps({"prompt": "x"}).encode()), 400, "model", param="model")


@pytest.mark.parametrize("field, value", [
    ("temperature", -1), ("temperature", "hot"), ("top_p", 0), ("top_p", 1.5), ("max_tokens", 0),
    ("max_tokens", 10**6), ("max_tokens", 2.5), ("seed", -3), ("stop", ["a", "b", "c", "d", "e"]), ("stop", [""]),
    ("n", 0), ("n", 9), ("stream", "yes"), ("messages", []), ("messages", [{"role": "robot", "content": "x"}]),
    ("messages", [{"role": "user", "content": 5}]),
])
def test_invalid_parameters(server, field, value):
    status, body = post(server, "/v1/chat/completions", json.dumps({**CHAT, field: value}).encode())
    assert_error(status, body, 400, field.split("[")[0])
    assert body["error"]["param"].startswith(field)


@pytest.mark.parametrize("prompt", [None, "", [], [-1], [10**9], [True]])
def test_invalid_completion_prompts(server, prompt):
    status, body = post(server, "/v1/completions", json.dumps({"model": MODEL_ID, "prompt": prompt}).encode())
    assert_error(status, body, 400, "prompt", param="prompt")


def test_a_prompt_over_the_limit(server):
    long = {**CHAT, "messages": [{"role": "user", "content": "word " * (MAX_PROMPT_TOKENS * 2)}]}
    status, body = post(server, "/v1/chat/completions", json.dumps(long).encode())
    assert_error(status, body, 400, str(MAX_PROMPT_TOKENS), "limit")
    assert body["error"]["code"] == "context_length_exceeded"
    ids = {"model": MODEL_ID, "prompt": [1] * (MAX_PROMPT_TOKENS + 1), "max_tokens": 1}
    assert_error(*post(server, "/v1/completions", json.dumps(ids).encode()), 400, "limit")


def test_unknown_paths_and_methods_are_error_objects(server):
    assert_error(*post(server, "/v1/embeddings", b"{}"), 404, "")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server}/v1/chat/completions")
    assert e.value.code == 405 and "error" in json.loads(e.value.read())


def test_the_official_client_raises_its_error_types_and_the_server_keeps_serving(client):
    openai = pytest.importorskip("openai")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "x"}], temperature=9)
    assert e.value.body["param"] == "temperature"
    ok = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert ok.usage.completion_tokens >= 1
