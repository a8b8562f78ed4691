"""generate and chat: the state after a prompt alone, the tokenizer's chat template, /reset."""
import json
import shutil

import pytest

from xlstm_metal import State, xLSTMRunner
from xlstm_metal.cli import main
from xlstm_metal.cli.generate import DEFAULT_MODEL

# the shape of a transformers chat template: special tokens, a loop over messages, the generation prompt
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}"
            "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_max_tokens_0_saves_the_state_after_the_prompt(capsys, tmp_path):
    state = tmp_path / "prompt.safetensors"
    code, out, err = cli(capsys, "generate", "--spec", "xlstm_tiny", "--prompt", "1,2,3", "--max-tokens", "0",
                         "--state-out", state)
    assert code == 0 and f"state saved to {state}" in err
    assert State.load(state).tokens_seen == 3
    # continuing from it is the same as reading the whole prompt at once
    _, continued, _ = cli(capsys, "generate", "--spec", "xlstm_tiny", "--state-in", state, "--prompt", "4",
                          "--max-tokens", "5", "--quiet")
    _, whole, _ = cli(capsys, "generate", "--spec", "xlstm_tiny", "--prompt", "1,2,3,4", "--max-tokens", "5", "--quiet")
    assert continued == whole and len(whole.split()) == 5


def test_prefill_is_the_state_generation_starts_from():
    runner = xLSTMRunner.from_spec("xlstm_tiny", seed=0)
    state = runner.prefill([5, 6, 7])
    assert state.tokens_seen == 3
    assert runner.generate([8], state=state, max_tokens=4) == runner.generate([5, 6, 7, 8], max_tokens=4)


@pytest.fixture
def templated(tmp_path):
    d = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps(dict(cfg, chat_template=TEMPLATE, bos_token="<|endoftext|>")))
    return d


def fed_texts(monkeypatch, generated=None):
    """What each turn feeds the model (decoded) and whether it continued a state; ``generated``: each reply's text
    as the state read it (special tokens included)."""
    fed = []
    stream = xLSTMRunner.stream

    def recording(self, prompt, **kw):
        fed.append((self.tokenizer.decode(prompt, skip_special_tokens=False), kw.get("state") is not None))
        tokens = []
        for r in stream(self, prompt, **kw):
            tokens.append(r.token)
            yield r
        if generated is not None:
            generated.append(self.tokenizer.decode(tokens, skip_special_tokens=False))

    monkeypatch.setattr(xLSTMRunner, "stream", recording)
    return fed


def chat(capsys, monkeypatch, *args, lines):
    it = iter(lines)
    monkeypatch.setattr("builtins.input", lambda prompt="": next(it))
    return cli(capsys, "chat", "--max-tokens", "3", *args)


def test_chat_uses_the_tokenizers_chat_template_and_feeds_only_the_new_turn(capsys, monkeypatch, templated):
    generated = []
    fed = fed_texts(monkeypatch, generated)
    code, out, _ = chat(capsys, monkeypatch, "--model", templated, "--system", "be brief",
                        lines=["hi", "more", "/exit"])
    assert code == 0 and out.count("Assistant:") == 2
    assert fed[0] == ("<|endoftext|><|system|>be brief<|endoftext|><|user|>hi<|endoftext|><|assistant|>", False)
    assert fed[1][1] and fed[1][0].endswith("<|user|>more<|endoftext|><|assistant|>")
    # the state read exactly the template's text of the whole conversation, each part once
    reply = generated[0].replace("<|endoftext|>", "")
    assert fed[0][0] + generated[0] + fed[1][0] == (
        f"<|endoftext|><|system|>be brief<|endoftext|><|user|>hi<|endoftext|><|assistant|>{reply}<|endoftext|>"
        f"<|user|>more<|endoftext|><|assistant|>")


def test_chat_without_a_template_writes_user_and_assistant_lines(capsys, monkeypatch):
    generated = []
    fed = fed_texts(monkeypatch, generated)
    chat(capsys, monkeypatch, lines=["hi", "more", "/exit"])
    assert fed[0] == ("User: hi\nAssistant:", False)
    assert fed[1][1] and fed[1][0].endswith("User: more\nAssistant:")
    said = generated[0].split("\nUser:")[0].replace("<|endoftext|>", "")
    assert (fed[0][0] + generated[0] + fed[1][0]).startswith(f"User: hi\nAssistant:{said}\nUser:")


def test_reset_starts_a_new_conversation(capsys, monkeypatch, templated, tmp_path):
    fed = fed_texts(monkeypatch)
    state_file = tmp_path / "chat.safetensors"
    _, _, err = chat(capsys, monkeypatch, "--model", templated, "--state-file", state_file,
                     lines=["hi", "/reset", "hello", "/exit"])
    assert "[conversation cleared]" in err and "/reset" in err  # (the banner names the command)
    assert fed[1] == ("<|endoftext|><|user|>hello<|endoftext|><|assistant|>", False)
    assert State.load(state_file).metadata["chat"][0] == {"role": "user", "content": "hello"}


def test_a_resumed_chat_renders_the_saved_history(capsys, monkeypatch, templated, tmp_path):
    state_file = tmp_path / "chat.safetensors"
    chat(capsys, monkeypatch, "--model", templated, "--state-file", state_file, lines=["hi", "/exit"])
    fed = fed_texts(monkeypatch)
    chat(capsys, monkeypatch, "--model", templated, "--state-file", state_file, lines=["again", "/exit"])
    assert len(fed) == 1 and fed[0][1] and fed[0][0].endswith("<|user|>again<|endoftext|><|assistant|>")
    assert not fed[0][0].startswith("<|endoftext|><|user|>hi")  # the history is not read again


def test_a_broken_chat_template_is_one_line_naming_the_file(capsys, monkeypatch, templated):
    cfg = json.loads((templated / "tokenizer_config.json").read_text())
    (templated / "tokenizer_config.json").write_text(json.dumps(dict(cfg, chat_template="{% for %}")))
    code, _, err = chat(capsys, monkeypatch, "--model", templated, lines=["hi", "/exit"])
    assert code == 1 and f"{templated / 'tokenizer_config.json'}: chat_template is not a valid Jinja template" in err
    assert err.count("\n") == 1
