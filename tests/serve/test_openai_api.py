"""The server speaks the OpenAI API: the official client chats, streams, completes and lists models."""
from __future__ import annotations

import json
import logging
import urllib.request

MODEL_ID = "small"  # the name the test server serves (conftest.py)


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == [MODEL_ID]


def test_health(server):
    with urllib.request.urlopen(f"{server}/health") as r:
        body = json.loads(r.read())
    assert r.status == 200 and body["status"] == "ok" and body["model"] == MODEL_ID


def test_a_chat_answers_with_text_and_usage(client):
    r = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "def add(a, b):"}],
                                       max_tokens=5, temperature=0)
    choice = r.choices[0]
    assert r.object == "chat.completion" and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.finish_reason in ("stop", "length")
    assert 1 <= r.usage.completion_tokens <= 5 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_a_streamed_chat_gives_the_same_text_as_the_whole_answer(client):
    messages = [{"role": "user", "content": "import numpy"}]
    whole = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=6, temperature=0)
    chunks = list(client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=6, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_streamed_and_not(client):
    whole = client.completions.create(model=MODEL_ID, prompt="for i in range(", max_tokens=5, temperature=0)
    assert whole.object == "text_completion" and whole.usage.completion_tokens <= 5
    parts = client.completions.create(model=MODEL_ID, prompt="for i in range(", max_tokens=5, temperature=0,
                                      stream=True)
    assert "".join(p.choices[0].text for p in parts) == whole.choices[0].text


def test_a_stop_string_ends_the_text_before_it(client):
    free = client.completions.create(model=MODEL_ID, prompt="x = 1\n", max_tokens=12, temperature=0).choices[0].text
    stop = free.strip()[:1]
    cut = client.completions.create(model=MODEL_ID, prompt="x = 1\n", max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop" and stop not in cut.choices[0].text
    assert free.startswith(cut.choices[0].text)


def test_the_same_seed_samples_the_same_text(client):
    kw = dict(model=MODEL_ID, prompt="class ", max_tokens=8, temperature=1.0, top_p=0.9, seed=7)
    assert client.completions.create(**kw).choices[0].text == client.completions.create(**kw).choices[0].text


def test_a_client_that_leaves_mid_stream_does_not_stop_the_server(client):
    stream = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "while True:"}],
                                            max_tokens=40, temperature=0, stream=True)
    next(iter(stream))
    stream.close()
    r = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert r.usage.completion_tokens >= 1


def test_each_request_logs_one_line_with_its_tokens_cache_and_speed(client, caplog):
    with caplog.at_level(logging.INFO, logger="xlstm_metal.serve"):
        r = client.completions.create(model=MODEL_ID, prompt="print(", max_tokens=3, temperature=0)
    lines = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("request ")]
    assert len(lines) == 1 and lines[0].startswith(f"request {r.id}:")
    assert f"{r.usage.prompt_tokens} prompt tokens ({r.usage.prompt_tokens_details.cached_tokens} cached), " \
           f"{r.usage.completion_tokens} generated" in lines[0] and "tok/s" in lines[0]


def test_eight_concurrent_clients_each_get_their_own_answer(client):
    from concurrent.futures import ThreadPoolExecutor

    prompts = [f"def f{i}(x):" for i in range(8)]

    def ask(prompt):
        r = client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=4, temperature=0)
        return r.choices[0].text

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, prompts))
    assert together == [ask(p) for p in prompts]
