"""Registers, stack and spills of the tensor-core chunkwise kernels as ptxas compiles them: a kernel whose
fragment arrays land in local memory runs many times slower, and MLX's JIT does not say so. Prints one JSON
object. nvcc: the GPU machine's, or the pip wheels' (nvidia-cuda-nvcc, -runtime, -crt, -cccl, nvidia-nvvm
unpacked into one tree: --nvcc path/to/bin/nvcc, its ../include is added), so it runs without a GPU too.

    python benchmarks/ptxas_report.py --arch sm_90 [--nvcc /tmp/nvcc/x/nvidia/cu13/bin/nvcc]
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
from xlstm_metal.kernels import gemv
from xlstm_metal.kernels.mlstm import tc_chunkwise as tc
from xlstm_metal.kernels.mlstm.fused_chunkwise import source

TYPES = {"q_": "const T*", "vT_": "const T*", "meta_": "const int*", "h_": "T*"}


def kernel_file(precise: int) -> str:
    params = [f"{TYPES.get(n, 'const float*')} {n}" for n in mc.INPUTS] + [f"{TYPES.get(n, 'float*')} {n}" for n in mc.OUTPUTS]
    return ("#include <cuda_bf16.h>\n#include <cuda_fp16.h>\n" + mc.HEADER
            + "template <typename T, int PRECISE>\n__global__ void mma_chunkwise("
            + ", ".join(params) + ") {\n" + source(mc.BODY, mc.CUDA_IDIOMS) + "\n}\n"
            + f"template __global__ void mma_chunkwise<__nv_bfloat16, {precise}>(" + ", ".join(
                p.replace("T*", "__nv_bfloat16*") for p in params) + ");\n")


TC_BF16 = {"q_", "k_", "v_", "i_", "f_", "LT_", "CT_", "h_"}  # the bf16 tensor-core kernel's bfloat16 arrays
TC_TEMPLATE = {"gates": "constexpr int HAS_MASK = 1;", "scan": "constexpr int HAS_STATE = 1;", "outputs": "using T = __nv_bfloat16;"}


def tc_kernel_file() -> str:
    """Every launch of kernels/mlstm/tc_chunkwise.py as one translation unit (the template values its real calls use)."""
    out = ["#include <cuda_bf16.h>", tc.HEADER]
    for name, (body, ins, outs) in tc.SOURCES.items():
        ps = [("const __nv_bfloat16*" if n in TC_BF16 else "const int*" if n == "meta_" else "const float*") + " " + n for n in ins]
        ps += [("__nv_bfloat16*" if n in TC_BF16 else "float*") + " " + n for n in outs]
        out.append(f'extern "C" __global__ void tc_{name}({", ".join(ps)}) {{\n{TC_TEMPLATE.get(name, "")}\n'
                   f'{source(body, tc.CUDA_IDIOMS)}\n}}')
    return "\n".join(out)


def gemv_kernel_file() -> str:
    """kernels/gemv.py's launch with bf16 x, weight, bias and output."""
    return ("#include <cuda_bf16.h>\n" + gemv.HEADER + '\nextern "C" __global__ void gemv(const __nv_bfloat16* x_, '
            "const __nv_bfloat16* w_, const __nv_bfloat16* b_, const int* meta_, __nv_bfloat16* y_) {\n"
            f"using T = __nv_bfloat16; constexpr int ROWS = {gemv.ROWS}, HAS_BIAS = 1;\n{source(gemv.BODY, gemv.CUDA_IDIOMS)}\n}}\n")


def row_kernels_file() -> str:
    """The row-wise norm kernels (kernels/add_rms_norm.py, head_norm_gate.py) with bf16 arrays, as their calls use them."""
    from xlstm_metal.kernels import add_rms_norm, head_norm_gate
    from xlstm_metal.kernels.row_kernels import row_source

    out = ["#include <cuda_bf16.h>"]
    for module, consts in ((add_rms_norm, "constexpr int D = 4096;"),
                           (head_norm_gate, "constexpr int NH = 8, DV = 512, HAS_BIAS = 0;")):
        k = module.KERNEL
        kinds = {"eps_": "const float*", "meta_": "const int*"}
        ps = [kinds.get(n, "const __nv_bfloat16*") + " " + n for n in k.inputs]
        ps += [f"__nv_bfloat16* {n}" for n in k.outputs]
        out.append(f'extern "C" __global__ void {k.name}({", ".join(ps)}) {{\nusing T = __nv_bfloat16; {consts}\n'
                   f'{row_source(k.body, "cuda", k.threads)}\n}}')
    return "\n".join(out)


def step_kernel_file() -> str:
    """kernels/mlstm/fused_step.py's launch at the 7B decode shape (bf16 q/k/v/gates, float32 state)."""
    from xlstm_metal.kernels.mlstm import fused_step

    t_inputs = {"q_", "k_", "v_", "i_", "f_", "bi_", "bf_"}  # in the q/k/v dtype; the rest float32
    bf = ", ".join(f"const __nv_bfloat16* {n}" for n in fused_step._INPUTS if n in t_inputs)
    fl = ", ".join(f"const float* {n}" for n in fused_step._INPUTS if n not in t_inputs)
    outs = "__nv_bfloat16* h_out, " + ", ".join(f"float* {n}" for n in fused_step._OUTPUTS[1:])
    return ("#include <cuda_bf16.h>\n" + f'extern "C" __global__ void xlstm_mlstm_step({bf}, {fl}, {outs}) {{\n'
            "using T = __nv_bfloat16; constexpr int DK = 256, DV = 512, NH = 8, HAS_GATE_BIAS = 1, RY = "
            f"{fused_step.ROW_SLICES};\n"
            + fused_step._source(fused_step._CUDA) + "\n}\n")


def compile_report(nvcc: str, arch: str, text: str) -> dict:
    """{kernel name: registers, stack, spills, shared memory} from ptxas -v, or {"error": ...}."""
    include = Path(nvcc).resolve().parent.parent / "include"
    with tempfile.TemporaryDirectory() as d:
        cu = Path(d) / "k.cu"
        cu.write_text(text)
        cmd = [nvcc, f"-arch={arch}", "-O3", "-c", "-Xptxas", "-v", str(cu), "-o", str(Path(d) / "k.o")]
        if include.is_dir():
            cmd[1:1] = [f"-I{include}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stdout + done.stderr)[-1500:]}
    report = {}
    for chunk in re.split(r"Compiling entry function '", done.stdout + done.stderr)[1:]:
        name = chunk.split("'")[0]
        report[name] = {key: int(m.group(1)) for key, pat in (("registers", r"Used (\d+) registers"),
                                                              ("stack_bytes", r"(\d+) bytes stack frame"),
                                                              ("spill_store_bytes", r"(\d+) bytes spill stores"),
                                                              ("spill_load_bytes", r"(\d+) bytes spill loads"),
                                                              ("shared_bytes", r"(\d+) bytes smem"))
                        for m in [re.search(pat, chunk)] if m}
    return report


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--nvcc", default=shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc")
    p.add_argument("--out")
    a = p.parse_args(argv)
    nvcc = a.nvcc
    res = {"arch": a.arch, "tc_chunkwise": compile_report(nvcc, a.arch, tc_kernel_file()),
           "gemv": compile_report(nvcc, a.arch, gemv_kernel_file()),
           "row_kernels": compile_report(nvcc, a.arch, row_kernels_file()),
           "step": compile_report(nvcc, a.arch, step_kernel_file())}
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
