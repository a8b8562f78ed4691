"""Sampling, streaming text, stopping, seeds, batches — the generation chain, on a tiny real model."""
import mlx.core as mx
import numpy as np
import pytest
from bpe import byte_level_bpe
from tokenizers import pre_tokenizers

from xlstm_metal import xLSTMRunner
from xlstm_metal.generation import TokenizerWrapper, make_logits_processors, make_sampler, stream_generate
from xlstm_metal.generation.sampling import apply_min_p, apply_top_k, apply_top_p

CORPUS = ["héllo wörld — 你好世界 🙂🚀 naïve café ünïcödé " * 3, "the quick brown fox jumps over the lazy dog", "日本語のテキスト 🎉"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    tok = byte_level_bpe(CORPUS, special_tokens=["<eos>"])
    return TokenizerWrapper(tok, eos_token="<eos>")


@pytest.fixture(scope="module")
def runner(tokenizer):
    spec = "xlstm_tiny"
    r = xLSTMRunner.from_spec(spec, seed=0)
    r.tokenizer = tokenizer
    return r


LOGP = mx.log(mx.array([[0.5, 0.3, 0.15, 0.05]]))


def kept(lp):
    return [bool(x) for x in np.isfinite(np.array(lp))[0]]


def test_filters_keep_the_documented_tokens():
    assert kept(apply_top_k(LOGP, 2)) == [True, True, False, False]
    assert kept(apply_top_p(LOGP, 0.5)) == [True, False, False, False]
    assert kept(apply_top_p(LOGP, 0.81)) == [True, True, True, False]
    assert kept(apply_min_p(LOGP, 0.25)) == [True, True, True, False]  # 0.15 >= 0.25 * 0.5
    assert kept(apply_min_p(LOGP, 0.99, keep=2)) == [True, True, False, False]


def test_repetition_penalty_changes_the_choice():
    logits = mx.array([[2.0, 1.9, 0.0, -1.0]])
    (penalize,) = make_logits_processors(repetition_penalty=1.5)
    out = penalize(mx.array([[0, 3]]), logits)
    np.testing.assert_allclose(np.array(out), [[2.0 / 1.5, 1.9, 0.0, -1.5]], rtol=1e-6)
    assert int(mx.argmax(out, axis=-1).item()) == 1


@pytest.mark.parametrize("kw, fragment", [({"top_p": 1.5}, "top_p must be in (0, 1]"), ({"temperature": -1}, "temperature"),
                                          ({"min_p": 1.0}, "min_p"), ({"top_k": -2}, "top_k")])
def test_bad_sampling_arguments_are_explained(kw, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        make_sampler(**{"temperature": 1.0, **kw})


def test_seeded_sampling_is_reproducible_and_seeds_differ(runner):
    a = [r.token for r in runner.stream([1, 2, 3], max_tokens=12, temperature=1.0, seed=7, eos_token_ids=set())]
    b = [r.token for r in runner.stream([1, 2, 3], max_tokens=12, temperature=1.0, seed=7, eos_token_ids=set())]
    c = [r.token for r in runner.stream([1, 2, 3], max_tokens=12, temperature=1.0, seed=8, eos_token_ids=set())]
    assert a == b and a != c


def test_greedy_equals_top_k_1_and_tiny_top_p(runner):
    greedy = [r.token for r in runner.stream([4, 5], max_tokens=8, eos_token_ids=set())]
    assert greedy == [r.token for r in runner.stream([4, 5], max_tokens=8, temperature=1.0, top_k=1, seed=1, eos_token_ids=set())]
    assert greedy == [r.token for r in runner.stream([4, 5], max_tokens=8, temperature=1.0, top_p=1e-6, seed=2, eos_token_ids=set())]


def test_greedy_tokens_follow_the_models_argmax(runner):
    prompt = [9, 8, 7]
    tokens = [r.token for r in runner.stream(prompt, max_tokens=5, eos_token_ids=set())]
    seq, expected = list(prompt), []
    for _ in range(5):
        logits, _ = runner(seq)
        expected.append(int(mx.argmax(logits[0, -1]).item()))
        seq.append(expected[-1])
    assert tokens == expected


def test_max_tokens_and_eos_finish_reasons(runner):
    responses = list(runner.stream([1, 2], max_tokens=4, eos_token_ids=set()))
    assert len(responses) == 4 and [r.finish_reason for r in responses] == [None, None, None, "length"]
    first = responses[0].token
    stopped = list(runner.stream([1, 2], max_tokens=4, eos_token_ids={first}))
    assert len(stopped) == 1 and stopped[0].finish_reason == "stop" and stopped[0].text == ""


def test_stream_response_carries_speed_memory_and_state(runner):
    last = list(runner.stream([1, 2, 3], max_tokens=3, eos_token_ids=set()))[-1]
    assert last.prompt_tokens == 3 and last.generation_tokens == 3
    assert last.prompt_tps > 0 and last.generation_tps > 0 and last.peak_memory > 0
    # the state includes every generated token: continuing from it equals running the full sequence
    tokens = [1, 2, 3] + [r.token for r in runner.stream([1, 2, 3], max_tokens=3, eos_token_ids=set())]
    full, _ = runner(tokens + [7])
    cont, _ = runner([7], last.state)
    np.testing.assert_allclose(np.array(cont[0, -1]), np.array(full[0, -1]), rtol=1e-4, atol=1e-4)


def scripted_model(token_ids, vocab):
    """A model_fn that emits ``token_ids`` in order (whatever the prompt), then repeats the last."""
    def model_fn(tokens, state=None, mask=None):
        step = 0 if state is None else state
        nxt = token_ids[min(step, len(token_ids) - 1)]
        logits = mx.full((tokens.shape[0], 1, vocab), -10.0)
        logits[:, :, nxt] = 10.0
        return logits, step + 1
    return model_fn


def test_streamed_text_is_whole_characters_and_equals_the_decoded_tokens(tokenizer):
    text = "héllo 你好 🙂🚀 naïve café"
    ids = tokenizer.encode(text)
    assert len(ids) > 8  # several characters span more than one token
    pieces = [r.text for r in stream_generate(scripted_model(ids, tokenizer.vocab_size), tokenizer, [0],
                                              max_tokens=len(ids), eos_token_ids=set())]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text


def test_detokenizer_holds_back_split_characters(tokenizer):
    ids = tokenizer.encode("🙂🚀你好")
    byte_ids = [tokenizer.tokenizer.token_to_id(c) for c in pre_tokenizers.ByteLevel.alphabet()]
    raw = "🙂".encode()
    # spell the emoji byte by byte: nothing may come out until its last byte
    alphabet = {b: c for b, c in zip(range(256), _bytes_to_unicode())}
    one_byte_tokens = [tokenizer.tokenizer.token_to_id(alphabet[b]) for b in raw]
    detok = tokenizer.detokenizer()
    outs = [detok.add_token(t) for t in one_byte_tokens]
    assert outs[:-1] == ["", "", ""] and outs[-1] == "🙂"
    detok = tokenizer.detokenizer()
    assert "".join(detok.add_token(t) for t in ids) + detok.finalize() == "🙂🚀你好"
    assert all(i is not None for i in byte_ids)


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def test_stop_strings_cut_the_text_exactly_even_across_pieces():
    class Chars:
        """A character tokenizer over a fixed alphabet, for exact stop-string tests."""
        alphabet = "abcdefgh XYZ"
        eos_token_ids = set()

        def encode(self, text):
            return [self.alphabet.index(c) for c in text]

        def decode(self, ids):
            return "".join(self.alphabet[i] for i in ids)

        def detokenizer(self):
            from xlstm_metal.generation.tokenizer import StreamingDetokenizer
            return StreamingDetokenizer(self)

    script = "abc XYZ def"

    def model_fn(tokens, state=None, mask=None):
        pos = 0 if state is None else state
        pos += tokens.shape[1]
        nxt = Chars.alphabet.index(script[(pos - 2) % len(script)])
        logits = mx.full((tokens.shape[0], 1, len(Chars.alphabet)), -10.0)
        logits[:, :, nxt] = 10.0
        return logits, pos

    out = list(stream_generate(model_fn, Chars(), "ab", max_tokens=20, stop=["XYZ"]))
    assert "".join(r.text for r in out) == "abc "
    assert out[-1].finish_reason == "stop"
    # a stop string that never completes is released at the end
    out = list(stream_generate(model_fn, Chars(), "ab", max_tokens=5, stop=["XYQ"]))
    assert "".join(r.text for r in out) == "abc X" and out[-1].finish_reason == "length"


def test_padded_batch_gives_the_tokens_of_each_prompt_alone(runner):
    prompts = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [42]]
    batched = runner.batch_generate(prompts, max_tokens=6, eos_token_ids=set())
    alone = [[r.token for r in runner.stream(p, max_tokens=6, eos_token_ids=set())] for p in prompts]
    assert batched == alone


def test_batch_rows_stop_on_their_own_eos(runner):
    prompts = [[5, 6, 7], [1, 2, 3, 4]]
    alone = [[r.token for r in runner.stream(p, max_tokens=6, eos_token_ids=set())] for p in prompts]
    eos = alone[0][2]
    out = runner.batch_generate(prompts, max_tokens=6, eos_token_ids={eos})
    assert out[0] == alone[0][:2]
    expected_1 = alone[1][:alone[1].index(eos)] if eos in alone[1] else alone[1]
    assert out[1] == expected_1


def test_text_prompts_need_a_tokenizer():
    r = xLSTMRunner.from_spec("xlstm_tiny")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        r.generate("hello")


def test_memory_is_reported_in_units_a_person_reads():
    from xlstm_metal.memory import format_bytes

    assert format_bytes(0.004e9) == "4.0 MB" and format_bytes(13.73e9) == "13.73 GB" and format_bytes(2e3) == "2.0 KB"


@pytest.mark.parametrize("name,content,fragment", [
    ("tokenizer.json", b'{"version": "1.0", "model": ', "tokenizer.json is not a valid tokenizer: EOF while parsing"),
    ("tokenizer.json", b"\xff\xfe\x00garbage", "tokenizer.json is not UTF-8 text"),
    ("tokenizer_config.json", b"\xff\xfe", "tokenizer_config.json is not UTF-8 text"),
    ("tokenizer_config.json", b"[1, 2]", "tokenizer_config.json must hold a JSON object"),
    ("tokenizer_config.json", b'{"eos_token": 5}', "tokenizer_config.json field 'eos_token' = 5: must be a token string"),
    ("config.json", b'{"eos_token_id": "0"}', "config.json field 'eos_token_id' = '0': must be a token id"),
    ("chat_template.jinja", b"{{ messages \xff\xfe }}", "chat_template.jinja is not UTF-8 text"),
])
def test_a_damaged_tokenizer_directory_is_one_line_naming_the_file(tmp_path, name, content, fragment):
    import shutil

    from xlstm_metal.cli.generate import DEFAULT_MODEL
    from xlstm_metal.generation.tokenizer import TokenizerError

    for f in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(DEFAULT_MODEL / f, tmp_path / f)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(TokenizerError, match=fragment) as info:
        TokenizerWrapper.from_dir(tmp_path)
    assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)
