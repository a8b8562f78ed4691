"""MAD synthetic tasks: rank YAML architectures on a laptop before scaling them."""
from .run import MadBudget, MadResult, run_mad, run_task, save, table
from .tasks import TASKS

__all__ = ["MadBudget", "MadResult", "TASKS", "run_mad", "run_task", "save", "table"]
