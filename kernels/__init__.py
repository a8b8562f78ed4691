"""Kernels, registered per family and form. Importing this package registers the native kernels."""
from .registry import KernelInfo, current_device, get_kernel, kernels, register_kernel, select_kernel

__all__ = ["KernelInfo", "current_device", "get_kernel", "kernels", "register_kernel", "select_kernel"]
from . import mlstm  # noqa: E402,F401  (registers the mLSTM kernels)
