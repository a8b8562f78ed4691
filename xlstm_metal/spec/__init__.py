"""Wiring specs: the YAML file format, its validation and its expansion into resolved nodes."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from .errors import SpecError, SpecIssue
from .expand import ExpandedSpec, ResolvedNode, expand_spec
from .source import SpecSource, parse_yaml, read_source


def _shipped_dir() -> Path:
    return Path(str(resources.files("xlstm_metal.wiring_specs")))


def shipped_spec_path(name: str) -> Path | None:
    """Path of a spec shipped with the package (``xlstm_tiny`` → wiring_specs/xlstm_tiny.yaml)."""
    path = _shipped_dir() / f"{name}.yaml"
    return path if path.is_file() else None


def shipped_specs() -> list[str]:
    return sorted(p.stem for p in _shipped_dir().glob("*.yaml"))


def load_spec(spec: Any) -> ExpandedSpec:
    """Read and expand a wiring spec: a path, a shipped spec name, YAML text, or a dict."""
    if isinstance(spec, ExpandedSpec):
        return spec
    if isinstance(spec, str) and "\n" not in spec and not spec.endswith((".yaml", ".yml")):
        path = shipped_spec_path(spec)
        if path is None and ":" not in spec:
            raise SpecError(f"no spec file or shipped spec named '{spec}'",
                            hint=f"shipped specs: {', '.join(shipped_specs())}; or give a path to a .yaml file")
        spec = path or spec
    return expand_spec(read_source(spec))


__all__ = ["SpecError", "SpecIssue", "ExpandedSpec", "ResolvedNode", "SpecSource", "load_spec", "parse_yaml",
           "read_source", "shipped_spec_path", "shipped_specs"]
