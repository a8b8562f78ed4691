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
    """Memory for people: GB from 1 GB up, MB or KB below (a small model's 4 MB is not "0.00 GB")."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def check_fits_in_memory(graph, bytes_per_parameter: float, what: str = "weights") -> None:
    """Refuse ``graph`` when its parameters at ``bytes_per_parameter`` exceed the available memory."""
    hint = "a smaller dtype (--dtype bfloat16), quantization or a smaller model" if bytes_per_parameter > 2 \
        else "quantization (xlstm-metal convert -q) or a smaller model" if bytes_per_parameter == 2 \
        else "fewer bits (xlstm-metal convert -q --q-bits 4) or a smaller model"
    check_bytes(graph.num_parameters() * bytes_per_parameter, f"'{graph.name}' needs {{need}} for its {what}", hint)


def check_bytes(need: float, needs: str, hint: str) -> None:
    """Refuse an allocation of ``need`` bytes beyond the available memory; ``needs`` says what for (with ``{need}``)."""
    have = available_memory()
    if have is not None and need > have:
        raise MemoryBudgetError(f"{needs.format(need=format_bytes(need))} but only {format_bytes(have)} of memory is "
                                f"available; choose {hint}")
