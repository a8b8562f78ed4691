"""``InputError``: the base of every error a bad user input produces (spec, config, checkpoint, state, tokenizer,
token ids, CLI values). Its message is one line that names the file and the field; the CLI prints it as is."""
from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user or a user's file; ``str(exc)`` says which file and field, and what to fix."""


def shown(name) -> str:
    """A name read from a user's file, fit for a one-line message: as it is when printable, else escaped."""
    text = str(name)
    return text if text.isprintable() else repr(text)[1:-1]
