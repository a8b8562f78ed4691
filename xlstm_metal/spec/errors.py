"""``SpecError``: the one exception a bad wiring spec produces, saying where and what to fix."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class SpecIssue:
    message: str
    file: str | None = None
    line: int | None = None
    node: str | None = None
    field: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file or '<spec>'}:{self.line}: " if self.line else (f"{self.file}: " if self.file else "")
        subject = ", ".join(f"{k} '{v}'" for k, v in (("node", self.node), ("field", self.field)) if v)
        text = where + (subject + ": " if subject else "") + self.message
        return text + (f"\n    hint: {self.hint}" if self.hint else "")


class SpecError(InputError):
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


def did_you_mean(word: str, candidates) -> str | None:
    """A 'did you mean' hint naming the closest known name, or None."""
    best = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f"did you mean '{best[0]}'?" if best else None
