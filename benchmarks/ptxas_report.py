"""Registers, stack and spills of the tensor-core chunkwise kernel as ptxas compiles it (nvcc on the GPU
machine): a kernel whose fragment arrays land in local memory runs many times slower, and MLX's JIT
does not say so. Prints one JSON object.

    python benchmarks/ptxas_report.py --arch sm_90
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import emit

from xlstm_metal.kernels.mlstm import mma_chunkwise as mc
from xlstm_metal.kernels.mlstm.fused_chunkwise import source

TYPES = {"q_": "const T*", "vT_": "const T*", "meta_": "const int*", "h_": "T*"}


def kernel_file(precise: int) -> str:
    params = [f"{TYPES.get(n, 'const float*')} {n}" for n in mc.INPUTS] + [f"{TYPES.get(n, 'float*')} {n}" for n in mc.OUTPUTS]
    return ("#include <cuda_bf16.h>\n#include <cuda_fp16.h>\n" + mc.HEADER
            + "template <typename T, int PRECISE>\n__global__ void mma_chunkwise("
            + ", ".join(params) + ") {\n" + source(mc.BODY, mc.CUDA_IDIOMS) + "\n}\n"
            + f"template __global__ void mma_chunkwise<__nv_bfloat16, {precise}>(" + ", ".join(
                p.replace("T*", "__nv_bfloat16*") for p in params) + ");\n")


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--out")
    a = p.parse_args(argv)
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    res = {"arch": a.arch}
    for precise in (0, 1):
        with tempfile.TemporaryDirectory() as d:
            cu = Path(d) / "k.cu"
            cu.write_text(kernel_file(precise))
            done = subprocess.run([nvcc, f"-arch={a.arch}", "-O3", "-c", "-Xptxas", "-v", str(cu), "-o", str(Path(d) / "k.o")],
                                  capture_output=True, text=True)
        text = done.stdout + done.stderr
        found = {key: int(m.group(1)) for key, pat in (("registers", r"Used (\d+) registers"),
                                                        ("stack_bytes", r"(\d+) bytes stack frame"),
                                                        ("spill_store_bytes", r"(\d+) bytes spill stores"),
                                                        ("spill_load_bytes", r"(\d+) bytes spill loads"),
                                                        ("shared_bytes", r"(\d+) bytes smem"))
                 for m in [re.search(pat, text)] if m}
        res["3xtf32" if precise else "tf32"] = found if done.returncode == 0 else {"error": text[-1500:]}
    emit(res, a.out)


if __name__ == "__main__":
    main()
