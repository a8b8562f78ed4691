"""xlstm_metal: author, run and verify xLSTM-family language models on MLX.

The data path: YAML spec → ``ModelGraph`` (networkx) → ``ExecutionPlan`` → blocks/kernels → runner.
Names are imported on first use, so ``import xlstm_metal`` and the command line's ``--help`` work without MLX.
"""
from .fast_blas import prefer_fast_blas
from .lazy import lazy_exports

prefer_fast_blas()  # before any module of ours imports mlx.core: on Linux CPU, MLX then uses a fast BLAS

__version__ = "0.1.0"

_EXPORTS = {"ExecutionPlan": ".plan", "ModelGraph": ".graph", "NodeExecutionError": ".runtime", "SpecError": ".spec",
            "State": ".state", "build_graph": ".graph", "load_spec": ".spec", "make_plan": ".plan",
            "xLSTMRunner": ".runner", "InputError": ".errors"}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS) + ["__version__"]
