"""Checking a safetensors file completely before MLX reads it: MLX trusts the header, so a damaged or hostile one
could make it read out of bounds or allocate without limit. Every problem is one line naming the file and entry."""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from .errors import InputError, shown

# the dtypes MLX reads, with their item sizes; others are valid safetensors that MLX cannot load
MLX_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "U16": 2, "I16": 2, "U32": 4, "I32": 4, "U64": 8, "I64": 8,
              "F16": 2, "BF16": 2, "F32": 4}
OTHER_DTYPES = {"F64": "float64", "F8_E4M3": "float8", "F8_E5M2": "float8", "C64": "complex64"}
FLOAT_DTYPES = {"F16", "BF16", "F32"}
MAX_HEADER = 100_000_000


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def read_header(path: Path, error: type[InputError] = InputError) -> dict:
    """The header of safetensors file ``path`` (tensor name -> {dtype, shape, data_offsets}, plus
    ``__metadata__``), checked entry by entry against the file's length; raises ``error`` naming what is wrong."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise error(f"{path} is truncated or not a safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", raw)
            if n > size - 8 or n > MAX_HEADER:
                raise error(f"{path} is corrupt or truncated: its header claims {n} bytes, the file has {size}")
            text = fh.read(n)
    except OSError as exc:
        raise error(f"{path} could not be read: {exc.strerror or exc}") from None
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{path} has a corrupt header (not JSON: {exc}); the file is damaged") from None
    if not isinstance(header, dict):
        raise error(f"{path} has a corrupt header: expected a JSON object of tensors, got {type(header).__name__}")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise error(f"{path} has a corrupt header: '__metadata__' must map names to strings")
    data = size - 8 - n
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"{path} tensor '{shown(name)}'"
        if not isinstance(entry, dict):
            raise error(f"{where}: header entry must be an object with dtype, shape and data_offsets")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype in OTHER_DTYPES:
            raise error(f"{where} is {OTHER_DTYPES[dtype]} ({dtype}), which MLX cannot load; convert the file to "
                        "float32, float16 or bfloat16 (e.g. with torch or numpy and safetensors)")
        if dtype not in MLX_DTYPES:
            raise error(f"{where} has an unknown dtype {dtype!r}; the file is damaged or not a safetensors file")
        if not isinstance(shape, list) or not all(_int(d) for d in shape):
            raise error(f"{where} has a corrupt 'shape' {shape!r} (expected a list of non-negative integers)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_int(o) for o in offsets)
                and offsets[0] <= offsets[1]):
            raise error(f"{where} has corrupt 'data_offsets' {offsets!r} (expected [begin, end])")
        if offsets[1] - offsets[0] != math.prod(shape) * MLX_DTYPES[dtype]:
            raise error(f"{where}: 'data_offsets' {offsets} do not hold a {dtype} tensor of shape {shape}; "
                        "the file is damaged")
        if offsets[1] > data:
            raise error(f"{path} is truncated: tensor '{shown(name)}' needs {8 + n + offsets[1]} bytes, the file has "
                        f"{size} (re-download it)")
        spans.append(offsets)
    spans.sort()
    for (_, end), (begin, _) in zip(spans, spans[1:]):
        if begin < end:
            raise error(f"{path} has overlapping tensors in its header; the file is damaged")
    return header
