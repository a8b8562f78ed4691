"""Training records: plain text files, and JSONL lines as mlx-lm reads them: ``{"text": ...}`` (every token
carries loss) or ``{"messages": [{"role": ..., "content": ...}, ...]}`` rendered with the tokenizer's chat template,
where only the assistant turns carry loss (the rest are context); ``{"prompt": ..., "completion": ...}`` is a
conversation of one user and one assistant turn. ``encode_records`` gives the token stream and
the loss mask that ``TokenBatches`` turns into ignored targets."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .data import read_texts

ROLES = ("system", "user", "assistant", "tool")


class RecordError(InputError):
    """A JSONL line that is not a training record (the message names file:line and the field)."""


@dataclass
class Record:
    where: str  # file (and line) it came from, for messages
    text: str | None = None
    messages: list[dict] | None = None


def _messages(value, where: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RecordError(f"{where}: field 'messages' must be a non-empty list of {{\"role\", \"content\"}} objects")
    for n, m in enumerate(value):
        if not isinstance(m, dict):
            raise RecordError(f"{where}: field 'messages[{n}]' must be an object with 'role' and 'content'")
        if m.get("role") not in ROLES:
            raise RecordError(f"{where}: field 'messages[{n}].role' = {m.get('role')!r}: must be one of "
                              f"{', '.join(ROLES)}")
        if not isinstance(m.get("content"), str):
            raise RecordError(f"{where}: field 'messages[{n}].content' must be a string")
    if not any(m["role"] == "assistant" for m in value):
        raise RecordError(f"{where}: field 'messages' has no assistant turn, so nothing in it carries loss")
    return value


def read_jsonl(path: Path) -> list[Record]:
    """Every non-blank line of ``path`` as a record; a bad line is one ``RecordError`` naming file:line."""
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be one "
                              "JSON object") from None
        if not isinstance(obj, dict) or not ("text" in obj or "messages" in obj or "prompt" in obj):
            raise RecordError(f"{where}: needs a field 'text' (a string), 'messages' (a list of turns), or 'prompt' "
                              "and 'completion' (strings)")
        if "prompt" in obj and "messages" not in obj and "text" not in obj:  # mlx-lm's completions: one exchange
            for name in ("prompt", "completion"):
                if not isinstance(obj.get(name), str):
                    raise RecordError(f"{where}: field '{name}' must be a string")
            records.append(Record(where, messages=[{"role": "user", "content": obj["prompt"]},
                                                   {"role": "assistant", "content": obj["completion"]}]))
        elif "messages" in obj:
            records.append(Record(where, messages=_messages(obj["messages"], where)))
        elif not isinstance(obj["text"], str):
            raise RecordError(f"{where}: field 'text' must be a string, got {type(obj['text']).__name__}")
        else:
            records.append(Record(where, text=obj["text"]))
    return records


def read_records(files: list[Path], max_bytes: int | None = None,
                 skipped: list[tuple[Path, str]] | None = None) -> list[Record]:
    """The records of ``files``: JSONL files line by line, any other file as one text (up to ``max_bytes``
    characters in all; unreadable text files are left out and recorded in ``skipped``)."""
    records, total = [], 0
    for f in files:
        if f.suffix == ".jsonl":
            found = read_jsonl(f)
        else:
            found = [Record(str(f), text=t) for t in read_texts([f], None, skipped)]
        records += found
        total += sum(len(r.text) if r.text is not None else sum(len(m["content"]) for m in r.messages)
                     for r in found)
        if max_bytes and total >= max_bytes:
            break
    return records


def _render(chat, record: Record) -> tuple[str, list[tuple[int, int]]]:
    """A record's text and the character spans that carry loss (all of a text; the assistant turns of a chat)."""
    if record.messages is None:
        return record.text, [(0, len(record.text))]
    msgs = record.messages
    try:
        full = chat.render(msgs, add_generation_prompt=False)
        spans = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            before, through = chat.render(msgs[:i], True), chat.render(msgs[:i + 1], False)
            if not (full.startswith(before) and full.startswith(through) and len(through) >= len(before)):
                raise RecordError(f"{record.where}: the chat template ({chat.where}) does not render this "
                                  f"conversation turn by turn (turn {i} is not a prefix of the whole), so the "
                                  "assistant tokens cannot be told apart")
            spans.append((len(before), len(through)))
    except RecordError:
        raise
    except InputError as exc:
        raise RecordError(f"{record.where}: {exc}") from None
    return full, spans


def record_texts(chat, records: list[Record]) -> list[str]:
    """The rendered text of every record (e.g. to train a tokenizer on)."""
    return [_render(chat, r)[0] for r in records]


def encode_records(tokenizer, chat, records: list[Record], eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, loss mask): every record's tokens then ``eos_id``; a token carries loss where it starts inside a
    loss span of its record (the end-of-text after a plain text does too; after a conversation the template's own
    end of turn does)."""
    rendered = [_render(chat, r) for r in records]
    ids: list[int] = []
    mask: list[bool] = []
    encoded = tokenizer.encode_batch([t for t, _ in rendered], add_special_tokens=False)
    for record, (_, spans), enc in zip(records, rendered, encoded):
        starts = np.array([start for start, _ in enc.offsets], dtype=np.int64)
        inside = np.zeros(len(starts), dtype=bool)
        for lo, hi in spans:
            inside |= (starts >= lo) & (starts < hi)
        ids += list(enc.ids) + [eos_id]
        mask += inside.tolist() + [record.messages is None]
    return np.asarray(ids, dtype=np.int32), np.asarray(mask, dtype=bool)
