"""A request body read and checked: every bad field is an ``APIError`` naming it (``param``), never a crash."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import APIError

ROLES = ("system", "user", "assistant")
MAX_SEED = 2**31 - 1


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    n: int = 1  # choices: rows that share the prompt's state


def _number(body: dict, name: str, default: float, low: float, high: float, *, above: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < low or value > high or (above and value == low):
        side = f"> {low}" if above else f">= {low}"
        raise APIError(f"{name} must be a number {side} and <= {high}, got {value!r}", param=name)
    return float(value)


def _integer(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise APIError(f"{name} must be an integer from {low} to {high}, got {value!r}", param=name)
    return value


def sampling(body: dict, *, default_max_tokens: int, limit_max_tokens: int, max_n: int = 1) -> Sampling:
    """The generation options shared by both endpoints; ``n`` choices, at most ``max_n`` (the batch's rows)."""
    n = _integer(body, "n", 1, max_n)
    max_tokens = _integer(body, "max_completion_tokens", 1, limit_max_tokens)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, limit_max_tokens)
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise APIError("stop must be a string or a list of at most 4 non-empty strings", param="stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(f"stream must be true or false, got {stream!r}", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise APIError("stream_options must be an object", param="stream_options")
    return Sampling(max_tokens=max_tokens if max_tokens is not None else default_max_tokens,
                    temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
                    top_p=_number(body, "top_p", 1.0, 0.0, 1.0, above=True),
                    seed=_integer(body, "seed", 0, MAX_SEED), stop=stop, stream=stream,
                    include_usage=bool(options.get("include_usage", False)), n=1 if n is None else n)


def _content(message: dict, i: int) -> str:
    """A message's text: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    content = message.get("content")
    if content is None and message.get("role") == "assistant":
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise APIError(f"messages[{i}].content must be a string or a list of text parts", param=f"messages[{i}].content")


def messages(body: dict) -> list[dict]:
    """The conversation as ``[{"role", "content"}]`` for the chat template."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise APIError("messages must be a non-empty list of {role, content} objects", param="messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise APIError(f"messages[{i}].role must be one of {', '.join(ROLES)}", param=f"messages[{i}].role")
        out.append({"role": m["role"], "content": _content(m, i)})
    return out


def prompt(body: dict) -> str | list[int]:
    """A completion prompt: text, a one-element list of text, or token ids."""
    p = body.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], str):
        p = p[0]
    if isinstance(p, str):
        return p
    if isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
        return p
    raise APIError("prompt must be a string or a non-empty list of token ids (one prompt per request)",
                   param="prompt")
