"""A conversation resumes from the cached recurrent state: later turns read only their new tokens, and the answer
is the one a fresh server would give for the whole conversation."""
from __future__ import annotations

from xlstm_metal.serve.cache import StateCache

MODEL_ID = "small"  # the name the test server serves (conftest.py)


class Sized:
    def __init__(self, nbytes):
        self.nbytes = nbytes


def test_the_cache_finds_the_longest_proper_prefix():
    cache = StateCache(100)
    a, b = Sized(10), Sized(10)
    cache.put([1, 2], a)
    cache.put([1, 2, 3, 4], b)
    assert cache.longest_prefix([1, 2, 3, 4, 5]) == (4, b)
    assert cache.longest_prefix([1, 2, 3, 4]) == (2, a)  # one token must stay to be read
    assert cache.longest_prefix([1, 3]) == (0, None)


def test_the_cache_drops_the_least_recently_used_beyond_its_bytes():
    cache = StateCache(25)
    cache.put([1], Sized(10))
    cache.put([2], Sized(10))
    cache.longest_prefix([1, 9])  # [1] is used again
    cache.put([3], Sized(10))
    assert cache.nbytes == 20 and cache.longest_prefix([2, 9]) == (0, None)
    assert cache.longest_prefix([1, 9])[0] == 1 and cache.longest_prefix([3, 9])[0] == 1
    cache.put([4], Sized(26))  # larger than the whole cache: not kept
    assert len(cache) == 2


def test_a_three_turn_conversation_reads_only_its_new_tokens(client, uncached_client):
    messages = [{"role": "user", "content": "def square(x):"}]
    prompts = []
    for turn, follow_up in enumerate(["def cube(x):", "def double(x):", None], 1):
        r = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=4, temperature=0)
        cached = r.usage.prompt_tokens_details.cached_tokens
        if turn == 1:
            assert cached == 0
        else:  # everything the earlier turns read (their prompts) comes from the cache
            assert prompts[-1] <= cached < r.usage.prompt_tokens
        prompts.append(r.usage.prompt_tokens)
        answer = r.choices[0].message.content
        fresh = uncached_client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=4,
                                                        temperature=0)
        assert fresh.usage.prompt_tokens_details.cached_tokens == 0
        assert fresh.usage.prompt_tokens == r.usage.prompt_tokens
        assert fresh.choices[0].message.content == answer  # resuming changes nothing but the work done
        if follow_up is None:
            break
        messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": follow_up}]
    assert prompts[0] < prompts[1] < prompts[2]
