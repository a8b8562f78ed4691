"""``SpecError``: the one exception a bad wiring spec produces, saying where and what to fix."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

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
        self.issues = _merge_copies([issues] if isinstance(issues, SpecIssue) else list(issues))
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
        shown = "\n".join(f"- {i}" for i in self.issues[:MAX_SHOWN])
        more = f"\n- ... and {len(self.issues) - MAX_SHOWN} more" if len(self.issues) > MAX_SHOWN else ""
        files = {i.file for i in self.issues}
        where = next(iter(files)) if len(files) == 1 and None not in files else "the wiring spec"
        return f"{len(self.issues)} problems in {where}:\n{shown}{more}"


MAX_SHOWN = 20  # problems listed in the message (``issues`` keeps all)


def _merge_copies(issues: list[SpecIssue]) -> list[SpecIssue]:
    """One issue per spec line and problem: the copies of a ``repeat`` share their lines, so a mistake inside
    one is reported once, with how many copies it affects."""
    groups: dict[tuple, list[SpecIssue]] = {}
    for issue in issues:
        key = (issue.file, issue.line, issue.field, issue.message) if issue.line else (id(issue),)
        groups.setdefault(key, []).append(issue)
    return [group[0] if len(group) == 1 else replace(group[0], message=f"{group[0].message} "
                                                                         f"(and in {len(group) - 1} more copies)")
            for group in groups.values()]


def did_you_mean(word: str, candidates) -> str | None:
    """A 'did you mean' hint naming the closest known name other than ``word`` itself, or None."""
    best = difflib.get_close_matches(str(word), [str(c) for c in candidates if str(c) != str(word)], n=1, cutoff=0.5)
    return f"did you mean '{best[0]}'?" if best else None


def short_repr(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a huge bad value does not flood the message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def collapse_unions(errors: list[dict]) -> list[dict]:
    """Pydantic reports a value that fits no member of a union once per member (``loc`` ending in ``int``,
    ``float``, ...); merge those into one error at the value's own location."""
    by_loc: dict[tuple, list[dict]] = {}
    for err in errors:
        by_loc.setdefault(tuple(err["loc"][:-1]), []).append(err)
    out, done = [], set()
    for err in errors:
        base, group = tuple(err["loc"][:-1]), by_loc[tuple(err["loc"][:-1])]
        if len(group) < 2 or err["type"] in ("missing", "extra_forbidden") or not base:
            out.append(err)
        elif base not in done:
            done.add(base)
            kinds = ", ".join(str(e["loc"][-1]) for e in group)
            out.append(dict(err, loc=base, type="union", msg=f"expected one of: {kinds}"))
    return out
