"""The MAD protocol (Poli et al. 2024): rank YAML architectures on six synthetic tasks the way the paper does
(imported on first use: ``xlstm-metal mad --help`` lists the tasks without MLX)."""
from ..lazy import lazy_exports

_EXPORTS = {"MadDataError": ".data", "Split": ".data", "read_split": ".data", "setting_data": ".data",
            "write_split": ".data", "best_of": ".report", "mad_scores": ".report", "table": ".report",
            "write_report": ".report", "markdown": ".report", "complete_cells": ".report",
            "BASELINES": ".settings", "CHANGES": ".settings", "Setting": ".settings",
            "task_settings": ".settings", "Budget": ".sweep", "read_runs": ".sweep", "run_sweep": ".sweep",
            "IGNORE": ".tasks", "TASKS": ".tasks"}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
