"""``SpecError``: the one exception a bad wiring spec produces, saying where and what to fix."""
from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class SpecIssue:
    message: str
    file: str | None = None
    line: int | None = None
    node: str | None = None
    field: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file or self.line:
            where = f"{self.file or '<spec>'}:{self.line}: " if self.line else f"{self.file}: "
        subject = []
        if self.node:
            subject.append(f"node '{self.node}'")
        if self.field:
            subject.append(f"field '{self.field}'")
        text = where + (", ".join(subject) + ": " if subject else "") + self.message
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class SpecError(ValueError):
    """A wiring spec is invalid. ``issues`` lists every problem found, each with file/line/node/field."""

    def __init__(self, issues: SpecIssue | list[SpecIssue] | str, **where):
        if isinstance(issues, str):
            issues = SpecIssue(issues, **where)
        self.issues = [issues] if isinstance(issues, SpecIssue) else list(issues)
        super().__init__(str(self))

    @property
    def first(self) -> SpecIssue:
        return self.issues[0]

    def __getattr__(self, item):  # .node, .field, .line, .file, .hint of the first issue
        if item in ("message", "file", "line", "node", "field", "hint"):
            return getattr(self.issues[0], item)
        raise AttributeError(item)

    def __str__(self) -> str:
        if len(self.issues) == 1:
            return str(self.issues[0])
        return f"{len(self.issues)} problems in the wiring spec:\n" + "\n".join(f"- {i}" for i in self.issues)


def closest(word: str, candidates, n: int = 1) -> str | None:
    """The closest known name, for 'did you mean' hints."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=n, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates) -> str | None:
    best = closest(word, candidates)
    return f"did you mean '{best}'?" if best else None
