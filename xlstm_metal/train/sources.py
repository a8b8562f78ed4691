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
from typing import Callable, Iterable

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
    """Texts that passed cleaning, each with the file it came from; what was left out, with why."""
    names: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    duplicates: int = 0

    def summary(self) -> str:
        blobs = [(n, r) for n, r in self.left_out if r != "--exclude"]
        parts = [f"{len(self.texts)} files, {sum(map(len, self.texts)) / 1e6:.1f} M characters"]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate(s) dropped")
        if blobs:
            parts.append(f"{len(blobs)} generated table(s) or data blob(s) left out (e.g. {blobs[0][0]}: "
                         f"{blobs[0][1]})")
        if len(blobs) < len(self.left_out):
            parts.append(f"{len(self.left_out) - len(blobs)} matched --exclude")
        return "; ".join(parts)


def clean_sources(named: Iterable[tuple[str, str]], keep_blobs: bool = False, max_chars: int | None = None) -> Sources:
    """The texts of ``named`` ((name, text) pairs, in order; read no further than needed) without generated tables
    and data blobs (unless ``keep_blobs``) and duplicates (the first copy stays), up to ``max_chars`` characters."""
    out, seen, total = Sources(), set(), 0
    for name, text in named:
        why = None if keep_blobs else blob_reason(text)
        if why is not None:
            out.left_out.append((name, why))
            continue
        key = fingerprint(text)
        if key in seen:
            out.duplicates += 1
            continue
        seen.add(key)
        out.names.append(name)
        out.texts.append(text)
        total += len(text)
        if max_chars and total >= max_chars:
            break
    return out


def gather_sources(files: list[Path], read: Callable[[Path], list[str]], exclude: list[str] = (),
                   keep_blobs: bool = False, max_chars: int | None = None) -> Sources:
    """``clean_sources`` over the texts ``read(file)`` gives for each of ``files`` that no ``exclude`` glob
    matches (those are not read)."""
    exclude = list(exclude)
    chosen = [f for f in files if not excluded(f, exclude)]
    out = clean_sources(((str(f), t) for f in chosen for t in read(f)), keep_blobs, max_chars)
    out.left_out += [(str(f), "--exclude") for f in files if excluded(f, exclude)]
    return out


def is_held_out(text: str, share: float) -> bool:
    """Whether a file belongs to the held-out set: a function of its normalized text alone, so the same files are
    held out whatever else the data holds or its order, and copies of one file fall on one side."""
    return int(fingerprint(text)[:8], 16) < share * 16 ** 8


def split_held_out(texts: list[str], share: float) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): whole files chosen by ``is_held_out``; with too few files for that to
    hold any out (or it would hold out all), the last ``share`` of the characters (cut inside the last files)."""
    held = [is_held_out(t, share) for t in texts]
    if any(held) and not all(held):
        return [t for t, h in zip(texts, held) if not h], [t for t, h in zip(texts, held) if h]
    joined = "".join(texts)
    cut = len(joined) - max(1, int(len(joined) * share))
    train, rest, pos = [], [], 0
    for t in texts:
        a, b = t[:max(0, cut - pos)], t[max(0, cut - pos):]
        train += [a] if a else []
        rest += [b] if b else []
        pos += len(t)
    return train, rest
