"""Run a fused GPU kernel's source on the CPU: the same kernel text, compiled as C++ with OpenMP.

Metal cannot run on Linux and CUDA needs the GPU machine, but our fused kernels are written once
in the common subset of both languages with a few idiom words (``SHARED``, ``BARRIER``, ``TID``,
``GX``/``GY``/``GZ``). Mapped to C++ (a threadgroup = an OpenMP team, shared memory = static
locals of the body, a barrier = ``omp barrier``), the algorithm itself runs here and can be
checked against the native kernels by the ordinary test suite; the GPU run then only has the
language idioms left to get wrong.

The emulator has the calling convention of ``mx.fast.cuda_kernel``'s kernels (inputs, template,
grid in threads, threadgroup, output shapes/dtypes), float32 and int32 arrays only.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# A threadgroup is far more OpenMP threads than this machine has cores: waiting threads must sleep,
# not spin (libgomp reads these when it is first loaded, i.e. with the first emulated kernel).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "0")

import mlx.core as mx
import numpy as np

# the idiom words of the fused kernels
IDIOMS = {"UNROLL": "", "SHARED": "alignas(16) static", "BARRIER": "_Pragma(\"omp barrier\")",
          "TID": "omp_get_thread_num()", "GX": "g_group[0]", "GY": "g_group[1]", "GZ": "g_group[2]"}

_PRELUDE = """
#include <cmath>
#include <cstdint>
#include <omp.h>
using namespace std;
static inline float rsqrt(float x) { return 1.0f / std::sqrt(x); }
static int g_group[3];
#pragma omp threadprivate(g_group)
static int g_threads;  // threads per group
"""


# The bfloat16 helpers of kernels/mlstm/tc_chunkwise.py (PTX mma.sync m16n8k16 bf16, warp shuffles), emulated: each
# lane publishes its operands, the warp's lanes meet at a barrier (every thread of the group calls it at the same
# points, as the kernel's uniform control flow guarantees), and each lane computes its own results. A ``bf2`` is a
# pair of floats holding bfloat16 values (rounded to nearest even, as __floats2bfloat162_rn does),
# arrays are float32 holding bfloat16 values, and the warp-level helpers exchange through shared tables at barriers.
BF16_MMA_HEADER = r"""
#include <cstring>
struct bf2 { float lo, hi; };
static inline float bf16_round(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    std::memcpy(&x, &u, 4);
    return x;
}
static inline bf2 pack2(float lo, float hi) { bf2 r; r.lo = bf16_round(lo); r.hi = bf16_round(hi); return r; }
static inline void st_pair(float* p, float a, float b) { p[0] = bf16_round(a); p[1] = bf16_round(b); }
static inline void split2(float a, float b, bf2& hi, bf2& lo) { hi = pack2(a, b); lo = pack2(a - hi.lo, b - hi.hi); }
static inline void copy8(bf2* dst, const float* src) {
    for (int r = 0; r < 4; ++r) dst[r] = pack2(src[2 * r], src[2 * r + 1]);
}
static inline void zero8(bf2* dst) { for (int r = 0; r < 4; ++r) dst[r] = pack2(0.0f, 0.0f); }
struct row8 { float x[8]; };
static inline row8 ld_row8(const float* p) { row8 r; for (int e = 0; e < 8; ++e) r.x[e] = p[e]; return r; }
static inline void unpack8(const row8& r, float* x) { for (int e = 0; e < 8; ++e) x[e] = r.x[e]; }
static inline void st_row8(float* p, const float* x) { for (int e = 0; e < 8; ++e) p[e] = bf16_round(x[e]); }
static inline void cp_async8(bf2* dst, const float* src, bool valid) { if (valid) copy8(dst, src); else zero8(dst); }
static inline void cp_async_commit() {}
template <int N>
static inline void cp_async_wait() {}
static bf2 g_bfa[32][32][4];
static bf2 g_bfb[32][32][2];
static float g_quad[1024];
#define XL_FN static inline
static inline float half_of(const bf2& x, int k) { return (k & 1) ? x.hi : x.lo; }
static inline void mma_bf16(float* d, const bf2* a, const bf2* b) {
    const int t = omp_get_thread_num(), w = t / 32, l = t % 32;
    for (int r = 0; r < 4; ++r) g_bfa[w][l][r] = a[r];
    for (int r = 0; r < 2; ++r) g_bfb[w][l][r] = b[r];
    _Pragma("omp barrier")
    const int gid = l / 4, tig = l % 4;
    for (int e = 0; e < 4; ++e) {
        const int row = gid + (e < 2 ? 0 : 8), col = 2 * tig + (e & 1);
        double s = 0.0;
        // A (row, k): lane 4 (row % 8) + (k % 8) / 2, register row / 8 + 2 (k / 8), half k % 2;
        // B (k, col): lane 4 col + (k % 8) / 2, register k / 8
        for (int k = 0; k < 16; ++k)
            s += (double)half_of(g_bfa[w][4 * (row % 8) + (k % 8) / 2][row / 8 + 2 * (k / 8)], k)
                 * half_of(g_bfb[w][4 * col + (k % 8) / 2][k / 8], k);
        d[e] += (float)s;
    }
    _Pragma("omp barrier")
}
static inline float quad_sum(float x) {
    const int t = omp_get_thread_num();
    g_quad[t] = x;
    _Pragma("omp barrier")
    const float r = g_quad[t & ~3] + g_quad[(t & ~3) + 1] + g_quad[(t & ~3) + 2] + g_quad[(t & ~3) + 3];
    _Pragma("omp barrier")
    return r;
}
"""


def compiler_available() -> bool:
    return shutil.which(os.environ.get("CXX", "g++")) is not None


def _ctype(dtype) -> str:
    if dtype == mx.float32:
        return "float"
    if dtype == mx.int32:
        return "int32_t"
    raise TypeError(f"the CPU emulator handles float32 and int32 arrays, not {dtype}")


class CpuKernel:
    """One kernel body compiled for the CPU; called like an ``mx.fast.cuda_kernel`` kernel."""

    _cache: dict[str, ctypes.CDLL] = {}

    def __init__(self, name: str, input_names, output_names, source: str, header: str = ""):
        self.name, self.source, self.header = name, source, header
        self.input_names, self.output_names = list(input_names), list(output_names)

    def _library(self, in_types, out_types, template) -> ctypes.CDLL:
        consts = []
        for key, value in template:
            consts.append(f"using {key} = {_ctype(value)};" if isinstance(value, mx.Dtype)
                          else f"constexpr int {key} = {int(value)};")
        params = [f"const {t}* {n}" for n, t in zip(self.input_names, in_types)]
        params += [f"{t}* {n}" for n, t in zip(self.output_names, out_types)]
        args = ", ".join(self.input_names + self.output_names)
        src = (_PRELUDE + self.header + f"static void body({', '.join(params)}) {{\n" + "\n".join(consts) + "\n"
               + self.source + "\n}\n"
               + f'extern "C" void launch({", ".join(params)}, int nx, int ny, int nz, int threads) {{\n'
               + "  for (int z = 0; z < nz; ++z) for (int y = 0; y < ny; ++y) for (int x = 0; x < nx; ++x) {\n"
               + "    g_threads = threads;\n"
               + "    #pragma omp parallel num_threads(threads) copyin(g_group)\n"
               + "    { g_group[0] = x; g_group[1] = y; g_group[2] = z;\n"
               + f"      body({args}); }}\n  }}\n}}\n")
        key = hashlib.sha256(src.encode()).hexdigest()[:16]
        if key not in self._cache:
            build = Path(tempfile.gettempdir()) / "xlstm_metal_cpu_kernels"
            build.mkdir(exist_ok=True)
            cpp, lib = build / f"{self.name}_{key}.cpp", build / f"{self.name}_{key}.so"
            if not lib.exists():
                cpp.write_text(src)
                cmd = [os.environ.get("CXX", "g++"), "-O1", "-std=c++17", "-fopenmp", "-shared", "-fPIC", str(cpp),
                       "-o", f"{lib}.{os.getpid()}.tmp"]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"kernel {self.name} does not compile as C++:\n{done.stderr[-4000:]}")
                os.replace(f"{lib}.{os.getpid()}.tmp", lib)  # unique temp name: test runs may build at once
            self._cache[key] = ctypes.CDLL(str(lib))
        return self._cache[key]

    def __call__(self, *, inputs, template, grid, threadgroup, output_shapes, output_dtypes, **_):
        ins = [np.ascontiguousarray(np.array(a)) for a in inputs]
        in_types = [_ctype(a.dtype) for a in inputs]
        out_types = [_ctype(d) for d in output_dtypes]
        lib = self._library(in_types, out_types, template)
        outs = [np.full(tuple(s), np.nan if d == mx.float32 else -1, dtype=np.float32 if d == mx.float32 else np.int32)
                for s, d in zip(output_shapes, output_dtypes)]
        tg = threadgroup[0]
        groups = [(g + t - 1) // t for g, t in zip(grid, threadgroup)]
        ptrs = [a.ctypes.data_as(ctypes.c_void_p) for a in ins + outs]
        lib.launch(*ptrs, *[ctypes.c_int(g) for g in groups], ctypes.c_int(tg))
        return [mx.array(o) for o in outs]
