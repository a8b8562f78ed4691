"""Will the weights fit? MLX does not raise when an allocation fails (it crashes), so a model whose weights exceed
the memory there is is refused before any weight is built, with the sizes and what to change."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError


class MemoryBudgetError(InputError):
    """The weights a spec or checkpoint asks for are larger than the memory available."""


def available_memory() -> int | None:
    """Bytes a new allocation can get: MemAvailable + free swap on Linux, physical memory elsewhere (None: unknown)."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
        try:
            return sum(int(fields[k].split()[0]) * 1024 for k in ("MemAvailable", "SwapFree") if k in fields) or None
        except ValueError:
            return None
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def check_fits_in_memory(graph, bytes_per_parameter: float, what: str = "weights") -> None:
    """Refuse ``graph`` when its parameters at ``bytes_per_parameter`` exceed the available memory."""
    need = graph.num_parameters() * bytes_per_parameter
    have = available_memory()
    if have is not None and need > have:
        hint = "a smaller dtype (--dtype bfloat16), quantization or a smaller spec" if bytes_per_parameter > 2 \
            else "quantization or a smaller spec"
        raise MemoryBudgetError(f"'{graph.name}' needs {format_bytes(need)} for its {what} but only "
                                f"{format_bytes(have)} of memory is available; choose {hint}")
