"""Cleaning training text: leave out generated tables and data blobs, drop duplicate files, hold files out.

Source trees carry files that are data, not code: codec tables (``encodings/cp1252.py``: one string literal and a
comment per line), Unicode and entity tables, serialized blobs on one long line. A model trained on them learns to
print tables. ``blob_reason`` recognises such text by its shape (what its lines hold), not by its name; the user adds
name patterns with ``--exclude``. Files that differ only in whitespace, blank lines or comment lines count once.
"""
from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

LONG_LINE = 1000  # characters: no hand-written source line is this long; minified code and blobs are
LONG_LINE_SHARE = 0.05  # share of lines over 300 characters that marks a file as a blob
DATA_LINE_SHARE = 0.5  # share of the substantive lines that hold only literals
MIN_DATA_LINES = 30  # a few constant lines are code; tables are long
MIN_IDENTIFIER_SHARE = 0.3  # identifiers among the words and numbers outside strings and comments

_STRING = re.compile(r"""[rbuRBUfF]{0,2}("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')""")
_COMMENT = re.compile(r"(#|//).*$")
_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z_0-9]*\b")
_NUMBER = re.compile(r"\b(?:0[xXoObB][0-9a-fA-F_]+|\d[\d_]*\.?\d*(?:[eE][+-]?\d+)?[jJlL]?)\b")
_KEYWORD_LITERALS = {"None", "True", "False", "null", "true", "false"}


def _code_part(line: str) -> tuple[str, bool]:
    """The line with string literals and the comment taken out, and whether it held a string literal."""
    without = _STRING.sub(" ", line)
    return _COMMENT.sub("", without), without != line


def blob_reason(text: str) -> str | None:
    """Why ``text`` is a generated table or data blob rather than written text (None: keep it).

    Counted per line, with string literals and comments taken out: a *data line* holds a literal but no name
    (``'\\u201d'   #  0x95 -> RIGHT DOUBLE QUOTATION MARK``, ``0x0080: 0x00c7,``, ``'AElig': 'Æ',``); a *code
    line* holds a name. Prose (a docstring, a README) has names on every line and is kept.
    """
    lines = text.splitlines()
    if not lines:
        return "empty"
    longest = max(map(len, lines))
    if longest >= LONG_LINE:
        return f"a line of {longest} characters"
    if sum(len(ln) > 300 for ln in lines) > LONG_LINE_SHARE * len(lines):
        return "many lines over 300 characters"
    data = code = idents = numbers = 0
    for line in lines:
        part, had_string = _code_part(line)
        names = [w for w in _IDENT.findall(_NUMBER.sub(" ", part)) if w not in _KEYWORD_LITERALS]
        nums = _NUMBER.findall(part)
        idents, numbers = idents + len(names), numbers + len(nums)
        if names:
            code += 1
        elif had_string or nums or set(_IDENT.findall(part)) & _KEYWORD_LITERALS:
            data += 1
    if data >= MIN_DATA_LINES and data >= DATA_LINE_SHARE * (data + code):
        return f"{data} of {data + code} lines hold only literals"
    if numbers >= MIN_DATA_LINES and idents < MIN_IDENTIFIER_SHARE * (idents + numbers):
        return f"{numbers} numbers against {idents} names"
    return None


def normalized(text: str) -> str:
    """``text`` without what copies of one file differ in: line indentation and trailing space, blank lines and
    whole-line comments (a licence header, a generated-on date)."""
    kept = (ln.strip() for ln in text.splitlines())
    return "\n".join(ln for ln in kept if ln and not ln.startswith(("#", "//")))


def fingerprint(text: str) -> str:
    return hashlib.sha256(normalized(text).encode("utf-8", "surrogatepass")).hexdigest()


def excluded(path: str | Path, patterns: list[str]) -> bool:
    """Whether ``path`` matches one of the ``--exclude`` globs (``*`` also crosses ``/``: ``*/tests/*``); a
    pattern without ``/`` also matches the file name alone (``*_pb2.py``)."""
    p = Path(path).as_posix()
    return any(fnmatch.fnmatchcase(p, g) or ("/" not in g and fnmatch.fnmatchcase(Path(p).name, g))
               for g in patterns)


@dataclass
class Sources:
    """Which of the texts passed cleaning (their positions in the input), and what was left out, with why."""
    kept: list[int] = field(default_factory=list)
    characters: int = 0
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    duplicates: int = 0
    excluded: int = 0  # files that matched --exclude (never read)

    def summary(self) -> str:
        parts = [f"{len(self.kept)} texts, {self.characters / 1e6:.1f} M characters"]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate(s) dropped")
        if self.left_out:
            name, why = self.left_out[0]
            parts.append(f"{len(self.left_out)} generated table(s) or data blob(s) left out (e.g. {name}: {why})")
        if self.excluded:
            parts.append(f"{self.excluded} file(s) matched --exclude")
        return "; ".join(parts)


def clean_sources(named: Iterable[tuple[str, str]], keep_blobs: bool = False) -> Sources:
    """Which of ``named`` ((name, text) pairs, in order) to keep: not generated tables or data blobs (unless
    ``keep_blobs``), and not copies of an earlier text."""
    out, seen = Sources(), set()
    for i, (name, text) in enumerate(named):
        why = None if keep_blobs else blob_reason(text)
        if why is not None:
            out.left_out.append((name, why))
            continue
        key = fingerprint(text)
        if key in seen:
            out.duplicates += 1
            continue
        seen.add(key)
        out.kept.append(i)
        out.characters += len(text)
    return out


def is_held_out(text: str, share: float) -> bool:
    """Whether a file belongs to the held-out set: a function of its normalized text alone, so the same files are
    held out whatever else the data holds or its order, and copies of one file fall on one side."""
    return int(fingerprint(text)[:8], 16) < share * 16 ** 8


def _record_text(record) -> str:
    """What identifies a training record (``train.records.Record``): its text, or its turns' contents."""
    return record.text if record.text is not None else "\n".join(m["content"] for m in record.messages)


def clean_records(records: list, keep_blobs: bool = False) -> tuple[list, Sources]:
    """``records`` without the text records ``clean_sources`` leaves out (conversations are kept as they are)."""
    texts = [i for i, r in enumerate(records) if r.text is not None]
    src = clean_sources(((records[i].where, records[i].text) for i in texts), keep_blobs)
    dropped = set(texts) - {texts[k] for k in src.kept}
    return [r for i, r in enumerate(records) if i not in dropped], src


def split_records(records: list, share: float) -> tuple[list, list] | None:
    """(training records, held-out records) chosen as ``is_held_out`` chooses files; None when that holds out
    none or all of them (too few records)."""
    held = [is_held_out(_record_text(r), share) for r in records]
    if not any(held) or all(held):
        return None
    return [r for r, h in zip(records, held) if not h], [r for r, h in zip(records, held) if h]
