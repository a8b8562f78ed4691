"""Wiring specs: the YAML file format, its validation and its expansion into resolved nodes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import SpecError, SpecIssue
from .expand import ExpandedSpec, ResolvedNode, expand_spec
from .source import SpecSource, parse_yaml, read_source

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "wiring_specs"


def shipped_spec_path(name: str) -> Path | None:
    """Path of a spec shipped with the package (``xlstm_tiny`` → wiring_specs/xlstm_tiny.yaml)."""
    try:
        from importlib import resources

        candidate = resources.files("xlstm_metal.wiring_specs") / f"{name}.yaml"
        if candidate.is_file():
            return Path(str(candidate))
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    local = SHIPPED_DIR / f"{name}.yaml"
    return local if local.is_file() else None


def shipped_specs() -> list[str]:
    try:
        from importlib import resources

        return sorted(p.name[:-5] for p in resources.files("xlstm_metal.wiring_specs").iterdir() if p.name.endswith(".yaml"))
    except ModuleNotFoundError:
        return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def load_spec(spec: Any) -> ExpandedSpec:
    """Read and expand a wiring spec: a path, a shipped spec name, YAML text, or a dict."""
    if isinstance(spec, ExpandedSpec):
        return spec
    if isinstance(spec, str) and "\n" not in spec and not spec.endswith((".yaml", ".yml")) and shipped_spec_path(spec):
        spec = shipped_spec_path(spec)
    elif isinstance(spec, str) and "\n" not in spec and ":" not in spec and not spec.endswith((".yaml", ".yml")):
        raise SpecError(f"no spec file or shipped spec named '{spec}'", hint=f"shipped specs: {', '.join(shipped_specs())}; or give a path to a .yaml file")
    return expand_spec(read_source(spec))


__all__ = ["SpecError", "SpecIssue", "ExpandedSpec", "ResolvedNode", "SpecSource", "load_spec", "parse_yaml",
           "read_source", "shipped_spec_path", "shipped_specs"]
