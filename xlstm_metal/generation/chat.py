"""A conversation as text: the tokenizer's chat template (Jinja, rendered as transformers renders it) or, without
one, plain ``User:`` / ``Assistant:`` lines. Only the new part of each turn is fed: the history lives in the state."""
from __future__ import annotations

import json
from datetime import datetime

from ..errors import InputError


class ChatTemplateError(InputError):
    """The tokenizer's chat template does not render (the message names the file)."""


def _jinja_template(source: str, where: str):
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateError as exc:
        raise ChatTemplateError(f"{where}: chat_template is not a valid Jinja template: {exc}") from None


class ChatFormat:
    """``render(messages, add_generation_prompt)``: the conversation as the model was trained to read it."""

    def __init__(self, template: str | None = None, *, where: str = "tokenizer_config.json",
                 special_tokens: dict | None = None, system: str = ""):
        self.where, self.system = where, system
        self.special_tokens = dict(special_tokens or {})
        self.template = _jinja_template(template, where) if template else None

    def start(self) -> list[dict]:
        """The messages of a new conversation (the system prompt, if any)."""
        return [{"role": "system", "content": self.system}] if self.system else []

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        if self.template is None:
            text = "".join(m["content"] + "\n" if m["role"] == "system" else f"User: {m['content']}\n"
                           if m["role"] == "user" else f"Assistant:{m['content']}\n" for m in messages)
            return text + ("Assistant:" if add_generation_prompt else "")
        import jinja2

        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        **self.special_tokens)
        except jinja2.exceptions.TemplateError as exc:
            raise ChatTemplateError(f"{self.where}: chat_template failed to render: {exc}") from None

    def continuation(self, history: list[dict], message: dict, consumed: str | None) -> tuple[str, bool]:
        """The text to feed for a new ``message`` and whether it continues the state, given the text the state has
        ``consumed`` (None: a fresh state, which reads the whole conversation). Where the rendered conversation
        extends what was consumed, only the difference is fed (the closing of the last answer, then the new turn);
        where the template rewrote the answer (e.g. trimmed it), the new turn follows the rendered history; where it
        rewrote earlier text, the whole conversation goes to a fresh state."""
        full = self.render(history + [message], add_generation_prompt=True)
        if consumed is None:
            return full, False
        if full.startswith(consumed):
            return full[len(consumed):], True
        before = self.render(history, add_generation_prompt=False)
        if full.startswith(before):
            return full[len(before):], True
        return full, False

    @property
    def stop(self) -> list[str]:
        """Stop strings: the plain format stops where the model starts the user's next line."""
        return [] if self.template else ["\nUser:"]
