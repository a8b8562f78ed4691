"""Training records: JSONL text and chat lines; in a chat only the assistant turns (as the tokenizer's chat template
renders them) carry loss; a bad line is one error naming file:line and the field."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from bpe import byte_level_bpe
from xlstm_metal.generation.chat import ChatFormat
from xlstm_metal.train.data import IGNORE, TokenBatches
from xlstm_metal.train.records import RecordError, encode_records, read_jsonl, read_records

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


TOK = byte_level_bpe(["def add(a, b): return a + b", "hello there, how are you"] * 20, special_tokens=SPECIAL)


def write(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def loss_text(ids, mask) -> str:
    """The text of the tokens that carry loss, in order."""
    return TOK.decode([int(i) for i, m in zip(ids, mask) if m], skip_special_tokens=False)


def test_text_lines_carry_loss_on_every_token_and_their_end(tmp_path):
    f = write(tmp_path / "d.jsonl", [{"text": "def add(a, b):"}, "", {"text": "return a + b"}])
    records = read_jsonl(f)
    assert [r.text for r in records] == ["def add(a, b):", "return a + b"]
    ids, mask = encode_records(TOK, ChatFormat(), records, eos_id=0)
    assert mask.all() and list(ids).count(0) == 2
    assert TOK.decode(list(ids)) == "def add(a, b):return a + b"


def test_only_the_assistant_turns_of_a_chat_carry_loss_as_the_template_renders_them(tmp_path):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "return a + b"}, {"role": "user", "content": "how are you"},
            {"role": "assistant", "content": "def add"}]
    records = read_jsonl(write(tmp_path / "c.jsonl", [{"messages": msgs}]))
    chat = ChatFormat(CHATML, where="chat_template.jinja")
    ids, mask = encode_records(TOK, chat, records, eos_id=0)
    assert TOK.decode(list(ids[:-1]), skip_special_tokens=False) == chat.render(msgs, False)
    assert loss_text(ids, mask) == "return a + b<|im_end|>\ndef add<|im_end|>\n"
    assert not mask[-1]  # the end-of-text after a conversation: the template's end of turn already taught
    n = len(ids) - 2  # one window, from the start: targets outside the answers are ignored
    x, y = TokenBatches(ids, 1, n, seed=0, mask=mask).batch(0)
    np.testing.assert_array_equal(x[0], ids[:n])
    np.testing.assert_array_equal(y[0], np.where(mask[1:n + 1], ids[1:n + 1], IGNORE))
    _, y16 = TokenBatches(ids.astype(np.uint16), 1, n, seed=0, mask=mask).batch(0)  # unsigned token arrays too
    np.testing.assert_array_equal(y16, y)


@settings(max_examples=examples(25))
@given(st.lists(st.tuples(st.text("abc hely\n", max_size=12), st.text("def ru+\n", min_size=1, max_size=12)),
                min_size=1, max_size=4))
def test_the_loss_tokens_are_exactly_the_assistant_answers(turns):
    msgs = [m for user, answer in turns for m in ({"role": "user", "content": user},
                                                  {"role": "assistant", "content": answer})]
    from xlstm_metal.train.records import Record

    ids, mask = encode_records(TOK, ChatFormat(CHATML), [Record("t", messages=msgs)], eos_id=0)
    assert loss_text(ids, mask) == "".join(f"{a}<|im_end|>\n" for _, a in turns)



def test_a_prompt_and_completion_line_is_one_exchange_with_loss_on_the_completion(tmp_path):
    f = write(tmp_path / "p.jsonl", [{"prompt": "hello", "completion": "def add"}])
    chat = ChatFormat(CHATML)
    ids, mask = encode_records(TOK, chat, read_jsonl(f), eos_id=0)
    assert TOK.decode(list(ids[:-1]), skip_special_tokens=False) == \
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\ndef add<|im_end|>\n"
    assert loss_text(ids, mask) == "def add<|im_end|>\n"


def test_without_a_template_the_plain_chat_format_of_generate_is_used(tmp_path):
    msgs = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": " def add"}]
    ids, mask = encode_records(TOK, ChatFormat(), read_jsonl(write(tmp_path / "c.jsonl", [{"messages": msgs}])), 0)
    assert TOK.decode(list(ids[:-1])) == "User: hello\nAssistant: def add\n"
    assert loss_text(ids, mask) == " def add\n"


@pytest.mark.parametrize("line, message", [
    ("{not json", r"d.jsonl:2: not valid JSON \(Expecting property name enclosed in double quotes at column 2\)"),
    ('["a"]', r"d.jsonl:2: needs a field 'text' \(a string\), 'messages'"),
    ('{"input": "a"}', r"d.jsonl:2: needs a field 'text' \(a string\), 'messages' \(a list of turns\), or 'prompt'"),
    ('{"prompt": "a"}', r"d.jsonl:2: field 'completion' must be a string"),
    ('{"text": 3}', r"d.jsonl:2: field 'text' must be a string, got int"),
    ('{"messages": []}', r"d.jsonl:2: field 'messages' must be a non-empty list"),
    ('{"messages": [{"role": "bot", "content": "x"}]}', r"d.jsonl:2: field 'messages\[0\].role' = 'bot': must be"),
    ('{"messages": [{"role": "user", "content": 1}]}', r"d.jsonl:2: field 'messages\[0\].content' must be a string"),
    ('{"messages": [{"role": "user", "content": "x"}]}', r"d.jsonl:2: field 'messages' has no assistant turn"),
])
def test_a_bad_line_is_one_error_naming_file_line_and_field(tmp_path, line, message):
    f = write(tmp_path / "d.jsonl", [{"text": "fine"}, line])
    with pytest.raises(RecordError, match=message) as e:
        read_records([f])
    assert "\n" not in str(e.value)


def test_a_template_that_does_not_render_turn_by_turn_is_named(tmp_path):
    rewrites = "{% for m in messages %}{{ m['content'] }}|{{ messages|length }}\n{% endfor %}"
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    records = read_jsonl(write(tmp_path / "c.jsonl", [{"messages": msgs}]))
    with pytest.raises(RecordError, match=r"c.jsonl:1: the chat template \(t.jinja\) does not render this "
                                          r"conversation turn by turn"):
        encode_records(TOK, ChatFormat(rewrites, where="t.jinja"), records, 0)


def test_the_training_loss_is_the_mean_over_the_targets_that_carry_loss(tmp_path):
    import mlx.core as mx
    import mlx.nn as nn
    from test_training import DATA, trainer

    t = trainer(tmp_path / "run", steps=1)
    x, y = TokenBatches(DATA, 2, 16, seed=0).batch(0)
    logits = t.runner(mx.array(x))[0].astype(mx.float32)
    each = np.array(nn.losses.cross_entropy(logits, mx.array(y), reduction="none"))
    counted = np.zeros_like(y, dtype=bool)
    counted[0, 3:9] = counted[1, 12:] = True
    loss = t.loss(t.runner.model, mx.array(x), mx.array(np.where(counted, y, IGNORE)))
    assert float(loss.item()) == pytest.approx(each[counted].mean(), rel=1e-4)
    assert float(t.loss(t.runner.model, mx.array(x), mx.array(y)).item()) == pytest.approx(each.mean(), rel=1e-4)
