"""Argument types that refuse what a number cannot mean (``--lr 0``, ``--seed -1``, ``--seq-len 10**12``), so a bad
value is one argparse line naming the option, before a model is built."""
from __future__ import annotations

import argparse
import math

MAX_SIZE = 2 ** 31 - 1  # lengths and counts index int32 arrays
MAX_SEED = 2 ** 32 - 1


def integer(low: int = 0, high: int = MAX_SIZE):
    """An int in ``[low, high]``."""
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], got {text}")
        return value
    parse.__name__ = "integer"  # what argparse names in "invalid integer value"
    return parse


def number(low: float = 0.0, *, above: bool = False, high: float = math.inf):
    """A finite float ``>= low`` (``above``: ``> low``) and ``<= high``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low) or value > high:
            want = f"{'>' if above else '>='} {low:g}" + (f" and <= {high:g}" if high != math.inf else "")
            raise argparse.ArgumentTypeError(f"must be a finite number {want}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


def int_list(low: int = 0, high: int = MAX_SIZE):
    """Comma-separated ints, each in ``[low, high]`` (at least one)."""
    one = integer(low, high)

    def parse(text: str) -> tuple[int, ...]:
        values = tuple(one(t.strip()) for t in text.split(",") if t.strip())
        if not values:
            raise argparse.ArgumentTypeError("give at least one comma-separated integer")
        return values
    parse.__name__ = "list of integers"
    return parse


def token_ids(text: str) -> list[int]:
    """Comma-separated token ids (>= 0; the model checks its vocabulary)."""
    return list(int_list(0, 2 ** 31 - 1)(text))


token_ids.__name__ = "token ids"

POSITIVE = integer(1)  # sizes and step counts
COUNT = integer(0)  # counts where 0 means none
SEED = integer(0, MAX_SEED)
