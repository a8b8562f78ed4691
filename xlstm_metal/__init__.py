"""xlstm_metal: author, run and verify xLSTM-family language models on MLX.

The data path: YAML spec → ``ModelGraph`` (networkx) → ``ExecutionPlan`` → blocks/kernels → runner.
"""
from xlstm_metal import blocks as _blocks  # noqa: F401  (registers the core blocks)
from xlstm_metal import kernels as _kernels  # noqa: F401  (registers the native kernels)

from .graph import ModelGraph, build_graph
from .plan import ExecutionPlan, make_plan
from .runner import xLSTMRunner
from .runtime import NodeExecutionError
from .spec import SpecError, load_spec
from .state import State

__version__ = "0.1.0"

__all__ = ["ExecutionPlan", "ModelGraph", "NodeExecutionError", "SpecError", "State", "build_graph", "load_spec",
           "make_plan", "xLSTMRunner", "__version__"]
