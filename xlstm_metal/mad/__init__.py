"""The MAD protocol (Poli et al. 2024): rank YAML architectures on six synthetic tasks the way the paper does."""
from .data import MadDataError, Split, read_split, setting_data, write_split
from .report import best_of, mad_scores, table, write_report
from .settings import BASELINES, CHANGES, Setting, task_settings
from .sweep import Budget, read_runs, run_sweep
from .tasks import IGNORE, TASKS

__all__ = ["BASELINES", "Budget", "CHANGES", "IGNORE", "MadDataError", "Setting", "Split", "TASKS", "best_of",
           "mad_scores", "read_runs", "read_split", "run_sweep", "setting_data", "table", "task_settings",
           "write_report", "write_split"]
