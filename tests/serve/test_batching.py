"""Continuous batching: requests share decode steps, each gets the answer it gets alone, a client that leaves is
dropped from the batch at its next token without disturbing the others, and ``n`` choices share one prompt."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from conftest import gated_server

PROMPTS = ["def f(x):", "import os\n", "class A:", "for i in range(10):\n    ", "x = [", "# a comment\n", "print(",
           "while True:\n    if x:"]


@pytest.fixture(scope="module")
def slow(small_runner):
    """A server whose model steps take at least 10 ms, so that concurrent requests overlap."""
    for url, gate in gated_server(small_runner, delay=0.01, max_batch=16):
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60), gate


def ask(client, i, max_tokens=None):
    """Request ``i``: its own prompt and length; odd ones sample with a seed, even ones are greedy."""
    sampled = dict(temperature=0.9, top_p=0.95, seed=100 + i) if i % 2 else dict(temperature=0)
    r = client.completions.create(model="m", prompt=PROMPTS[i], max_tokens=max_tokens or 6 + i, **sampled)
    return r.choices[0].text, r.choices[0].finish_reason, r.usage.completion_tokens


def test_eight_concurrent_clients_each_get_the_text_they_get_alone(slow):
    client, gate = slow
    alone = [ask(client, i) for i in range(8)]
    assert max(gate.sizes) == 1  # (one request at a time)
    gate.sizes.clear()
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda i: ask(client, i), range(8)))
    assert together == alone
    assert max(gate.sizes) >= 4  # they shared decode steps


def dropped(caplog) -> int:
    """The generated tokens of the request logged as left by its client (waiting for its log line)."""
    deadline = time.time() + 30
    while not (left := [m for m in caplog.messages if m.endswith("(client left)")]):
        assert time.time() < deadline, "the request whose client left was never dropped"
        time.sleep(0.01)
    return int(left[0].split(" generated")[0].rsplit(" ", 1)[1])


def test_a_client_that_leaves_mid_stream_is_dropped_and_the_others_go_on(slow, caplog):
    client, gate = slow
    alone = [ask(client, i, max_tokens=30) for i in range(3)]
    with caplog.at_level(logging.INFO, logger="xlstm_metal.serve"), ThreadPoolExecutor(3) as pool:
        stream = client.completions.create(model="m", prompt="def g(y):", max_tokens=200, temperature=0,
                                           stream=True)
        next(iter(stream))
        others = [pool.submit(ask, client, i, max_tokens=30) for i in range(3)]
        deadline = time.time() + 30
        while not gate.sizes or gate.sizes[-1] < 4:  # the stream and the three others decode together
            assert time.time() < deadline
            time.sleep(0.005)
        stream.close()
        assert dropped(caplog) < 100  # dropped at its next token, not run to its 200
        assert [f.result() for f in others] == alone  # the others are unaffected
    assert 1 <= gate.sizes[-1] < 4  # the batch shrank


def test_a_client_that_gives_up_on_a_whole_answer_is_dropped(slow, caplog):
    client, _ = slow
    impatient = client.with_options(timeout=0.3)
    with caplog.at_level(logging.INFO, logger="xlstm_metal.serve"):
        with pytest.raises(openai.APITimeoutError):
            impatient.completions.create(model="m", prompt="def h(z):", max_tokens=60, temperature=0)
        assert dropped(caplog) < 60


def test_n_choices_share_one_prompt_and_sample_apart(slow):
    client, _ = slow
    kw = dict(model="m", prompt="def f(x):", max_tokens=8, temperature=1.0, seed=5)
    two = client.completions.create(n=2, **kw)
    assert [c.index for c in two.choices] == [0, 1]
    one = client.completions.create(**kw)
    assert two.choices[0].text == one.choices[0].text  # choice 0 samples with the request's seed
    assert two.choices[1].text != two.choices[0].text  # choice 1 with its own
    assert two.usage.prompt_tokens == one.usage.prompt_tokens
    assert one.usage.completion_tokens < two.usage.completion_tokens <= 2 * 8  # both choices' tokens
    chunks = list(client.completions.create(n=2, stream=True, **kw))
    streamed = ["".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].index == i) for i in (0, 1)]
    assert streamed == [c.text for c in two.choices]
    chat = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], n=2,
                                               max_tokens=4, temperature=1.0, seed=5, stream=True))
    assert [(c.choices[0].index, c.choices[0].delta.role) for c in chat[:2]] == [(0, "assistant"), (1, "assistant")]
    assert {c.choices[0].index for c in chat if c.choices[0].finish_reason} == {0, 1}  # each choice ends


def test_health_reports_the_batch_and_the_queue(slow):
    import json
    import urllib.request

    client, gate = slow
    gate.open.clear()
    try:
        thread = threading.Thread(target=ask, args=(client, 0))
        thread.start()
        url = str(client.base_url).removesuffix("/v1/")
        deadline = time.time() + 30
        while (body := json.loads(urllib.request.urlopen(f"{url}/health").read()))["queue"] > 0 \
                or body["requests"] < 1:  # (until the model holds it)
            assert time.time() < deadline
            time.sleep(0.01)
        assert body["status"] == "ok" and body["requests"] == 1 and body["batch"] + body["reading"] == 1
    finally:
        gate.open.set()
    thread.join(60)


def test_a_long_prompt_is_read_in_chunks_while_others_decode_and_answers_as_alone(small_runner):
    long = [(7 * i) % 500 + 1 for i in range(90)]
    for url, gate in gated_server(small_runner, delay=0.01, prefill_chunk=16, cache_bytes=0):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        kw = dict(model="m", max_tokens=6, temperature=0)
        alone = client.completions.create(prompt=long, **kw).choices[0].text
        assert gate.reads == [89]  # nothing else running: read at once (all but the last token)
        with ThreadPoolExecutor(1) as pool:
            gate.sizes.clear()
            busy = pool.submit(client.completions.create, **kw | {"prompt": "x = 1", "max_tokens": 40})
            while len(gate.sizes) < 2:  # decoding
                time.sleep(0.005)
            gate.reads.clear()
            together = client.completions.create(prompt=long, **kw).choices[0].text
            assert not busy.done()
        assert max(gate.reads) == 16 and sum(gate.reads) == 89  # read in chunks between decode steps
        assert together == alone


def test_a_failed_model_step_fails_the_requests_in_it_and_the_server_serves_on(slow):
    client, gate = slow
    gate.fail = True
    with pytest.raises(openai.InternalServerError) as e:
        client.completions.create(model="m", prompt="def f(x):", max_tokens=4, temperature=0)
    assert "the device fell over" in e.value.body["message"]
    assert client.completions.create(model="m", prompt="def f(x):", max_tokens=4).usage.completion_tokens >= 1
