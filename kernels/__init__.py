"""Kernels, registered per family and form, and fusions of neighbouring nodes; importing registers them."""
from xlstm_metal.modes import inference_mode

from .registry import (FusionRule, KernelInfo, current_device, fusions, get_kernel, kernels, register_fusion,
                       register_kernel, select_kernel)

__all__ = ["FusionRule", "KernelInfo", "current_device", "fusions", "get_kernel", "inference_mode", "kernels",
           "register_fusion", "register_kernel", "select_kernel"]
from . import mlstm  # noqa: E402,F401  (registers the mLSTM kernels)
from . import add_rms_norm  # noqa: E402,F401  (registers the residual add + RMSNorm kernels and their fusion)
from . import head_norm_gate  # noqa: E402,F401  (registers the mLSTM per-head norm + output gate kernels)
