"""The benchmark and diagnosis scripts run (tiny shapes, CPU) and their self-checks hold.

Timings are not asserted (they mean something only on the GPU machine); what is asserted is what
each script claims to check: repeatable results, agreement between variants, a sane JSON result.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(BENCH / name), *args], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_repeated_prefills_are_bitwise_identical():
    res = run_script("repeat_runs.py", "--spec", "xlstm_tiny", "--seq-len", "24", "--repeats", "3", "--chunk-size", "8")
    assert res["nonfinite_runs"] == 0 and res["differing_runs"] == 0 and len(res["runs"]) == 3


def test_gpu_op_probe_finds_no_bad_node_on_the_cpu():
    res = run_script("probe_gpu_ops.py", "--spec", "xlstm_tiny", "--seq-len", "16", "--nodes", "4", "--max-log2", "14",
                     "--breakdown", "backbone.blocks.0.mlstm_layer")
    assert res["first_bad_node"] is None
    assert all(r["logits_finite"] and r["state_finite"] and not r["changed_params"] for r in res["runs"])
    ops = res["breakdown_requested"]["ops"]
    assert [o["op"] for o in ops][-1] == "out" and all(c["gpu_finite"] for o in ops for c in o["cmp"])


def test_mlstm_op_probe_and_determinism_probe_pass_on_the_cpu():
    res = run_script("probe_mlstm_ops.py", "--heads", "2", "--dk", "8", "--dv", "8", "--seqs", "1,64,130", "--max-log2", "14")
    assert res["bad"] == []
    res = run_script("probe_op_determinism.py", "--spec", "xlstm_tiny", "--seq-len", "16", "--repeats", "2", "--max-log2", "14")
    assert all(v["differ"] == 0 and v["nonfinite"] == 0 for v in res["ops"].values())


def test_chunkwise_variants_agree_and_are_timed_against_the_eager_kernel():
    res = run_script("profile_chunkwise.py", "--seqs", "96", "--heads", "2", "--dk", "8", "--dv", "8", "--iters", "1",
                     "--only", "eager_L64,eager_L128")
    assert res["eager_L64_ratio_S96"] == 1.0
    assert res["eager_L128_max_diff_S96"] < 1e-2  # bf16 inputs, float32 math: rounding only


@pytest.mark.parametrize("script, args, keys", [
    ("ablate_prefill.py", ["--spec", "xlstm_tiny", "--seq-len", "32", "--iters", "1"], ["full_ms", "no_cell_ms", "cell_share"]),
    ("decode_floor.py", ["--spec", "xlstm_tiny", "--steps", "2"], ["gemv_floor_ms", "ours_decode_ms", "ours_over_floor_time"]),
    ("profile_decode.py", ["--spec", "xlstm_tiny", "--tokens", "2"], ["wall_ms_per_token"]),
    ("bench_step.py", ["--heads", "2", "--dk", "16", "--dv", "32", "--blocks", "2", "--iters", "2"],
     ["native_step_us", "floor_elementwise_us", "floor_elementwise_TB_s"]),
    ("profile_prefill.py", ["--spec", "xlstm_tiny", "--seq-len", "40", "--eval-ahead", "0,1"],
     ["wall_ms_per_prefill_ahead0", "tok_s_ahead1", "peak_GB_ahead1"]),
    ("bench_kernel.py", ["--seqs", "64", "--heads", "1", "--dk", "8", "--dv", "8", "--iters", "1"], ["native_chunkwise_fwd_ms_S64"]),
    ("bench_model.py", ["--spec", "xlstm_tiny", "--prefill", "32", "--decode-steps", "2", "--decode-rounds", "1", "--iters", "1",
                        "--prefill-kernels", "native_chunkwise", "--prefill-segments", "16"],
     ["prefill_tok_s_S32", "prefill_tok_s_S32_native_chunkwise", "prefill_peak_GB_S32_native_chunkwise_segment16",
      "decode_tok_s_ctx16", "decode_stream_tok_s_ctx16"]),
])
def test_benchmark_scripts_report_their_numbers(script, args, keys):
    res = run_script(script, *args)
    for k in keys:
        assert isinstance(res[k], float) and res[k] == res[k], k  # present and not NaN


def test_the_prefill_memory_probe_runs_the_runners_prefill_in_every_setting():
    res = run_script("probe_prefill_memory.py", "--spec", "xlstm_tiny", "--dtype", "float32", "--seq-len", "40",
                     "--segments", "16,40")
    assert res["max_abs_diff_vs_runner"] < 1e-4  # segmented at 16 against one 40-token prefill: rounding only
    got = {(r["segment"], r["eval_ahead"], r["sync"]) for r in res["settings"]}
    assert got == {(seg, a, s) for seg in (16, 40) for a, s in ((1, "none"), (0, "none"), (1, "segment"), (0, "segment"),
                                                                (0, "layer"))}
    assert all(r["tok_s"] > 0 and r["peak_over_weights_GB"] > 0 for r in res["settings"])


def test_decode_primitives_count_one_matmul_per_projection_group():
    res = run_script("decode_primitives.py", "--dim", "128", "--vocab", "64")
    sep, merged = res["separate"]["per_block"], res["merged"]["per_block"]
    mm = lambda r: r["launch_ops"].get("Matmul", 0) + r["launch_ops"].get("AddMM", 0)  # noqa: E731
    assert mm(sep) == 10 and mm(merged) == 4  # 6 + 2 projections + 2 outputs -> 1 + 1 + 2
    assert merged["launches"] == sep["launches"] - 6
    assert merged["launch_ops"]["[fused_step_kernel]"] == 1
    # the residual adds and the norms after them, and the per-head norm with the output gate: one launch each
    assert merged["launch_ops"]["[add_rms_norm_kernel]"] == 2 and merged["launch_ops"]["[head_norm_gate_kernel]"] == 1
    assert not {"Add", "[fast.rms_norm]", "[fast.layer_norm]"} & set(merged["launch_ops"])
    assert merged["launches"] == 9
    assert res["merged"]["outside_blocks"] == res["separate"]["outside_blocks"]


def test_the_nsys_summary_gives_gpu_time_and_launches_per_token():
    import subprocess
    import sys

    csv_text = ('"Time (%)","Total Time (ns)","Instances","Avg (ns)","Med (ns)","Min (ns)","Max (ns)","StdDev (ns)","Name"\n'
                '"75.0","9000","40","225","225","200","250","10","gemv_single<bf16>"\n'
                '"25.0","3000","4","750","750","700","800","10","xlstm_mlstm_step"\n')
    done = subprocess.run([sys.executable, str(BENCH / "nsys_kernel_summary.py"), "--tokens", "4"], input=csv_text,
                          capture_output=True, text=True, check=True)
    res = json.loads(done.stdout)
    assert res["gpu_busy_us_per_token"] == 3.0 and res["launches_per_token"] == 11.0
    assert [k["name"] for k in res["kernels"]] == ["gemv_single<bf16>", "xlstm_mlstm_step"]


def test_the_fused_chunkwise_profile_says_why_it_measured_nothing_without_its_gpu():
    import mlx.core as mx

    if mx.cuda.is_available() or mx.metal.is_available():
        pytest.skip("a GPU backend is present: the script measures instead")
    res = run_script("profile_fused_chunkwise.py", "--seqs", "64", "--heads", "1", "--dk", "8", "--dv", "8")
    assert res["backend"] is None and "no GPU backend" in res["skipped"]


def test_the_tensor_core_profile_says_why_it_measured_nothing_without_cuda():
    import mlx.core as mx

    if mx.cuda.is_available():
        pytest.skip("CUDA is present: the script measures instead")
    res = run_script("profile_tc_chunkwise.py", "--seqs", "64", "--heads", "1", "--dk", "8", "--dv", "8")
    assert "no CUDA backend" in res["skipped"]


def test_the_gemv_benchmark_says_why_it_measured_nothing_without_cuda():
    import mlx.core as mx

    if mx.cuda.is_available():
        pytest.skip("CUDA is present: the script measures instead")
    assert "no CUDA backend" in run_script("bench_gemv.py", "--iters", "1")["skipped"]


def test_the_tensor_core_gemv_and_norm_kernels_compile_without_spills():
    """Where an nvcc is at hand (PATH, or XLSTM_NVCC: e.g. the pip wheels' one): ptxas keeps every fragment in
    registers (a spill makes a kernel many times slower, and MLX's JIT would not say so) and shared memory
    within the 48 KB a kernel gets without opting in."""
    import shutil

    nvcc = os.environ.get("XLSTM_NVCC") or shutil.which("nvcc")
    if not nvcc:
        pytest.skip("no nvcc here (set XLSTM_NVCC to one)")
    report = run_script("ptxas_report.py", "--nvcc", nvcc)
    res = report["tc_chunkwise"]
    for part in ("tc_chunkwise", "gemv", "row_kernels", "step"):
        assert "error" not in report[part], report[part].get("error")
    assert set(res) == {f"tc_{name}" for name in ("gates", "local", "local_chunk", "scan", "outputs")}
    assert set(report["row_kernels"]) == {"xlstm_add_rms_norm", "xlstm_head_norm_gate"}
    assert set(report["step"]) == {"xlstm_mlstm_step"}
    for name, r in [*res.items(), *report["gemv"].items(), *report["row_kernels"].items(), *report["step"].items()]:
        assert r["spill_store_bytes"] == 0 and r["stack_bytes"] == 0, name
        assert r.get("shared_bytes", 0) <= 48 * 1024, name


def test_the_parity_sweep_reports_cases_and_no_failures_for_the_native_kernels():
    res = run_script("sweep_kernel_parity.py", "--seconds", "3", "--kernels", "native_chunkwise,native_sequence")
    assert res["cases"]["native_chunkwise"] >= 1 and res["cases"]["native_sequence"] >= 1
    assert res["failures"] == []


def test_the_parity_sweep_reports_a_wrong_kernel_with_its_case():
    sys.path.insert(0, str(BENCH))
    try:
        import sweep_kernel_parity as sweep
    finally:
        sys.path.remove(str(BENCH))
    import numpy as np

    from xlstm_metal.kernels import get_kernel
    native = get_kernel("mlstm", "native_chunkwise")

    class OffByAPercent:
        name = "off_by_a_percent"

        @staticmethod
        def fn(*args, **kwargs):
            h, state = native.fn(*args, **kwargs)
            return h * 1.01, state

    case, chunk = sweep.random_case(np.random.default_rng(3))
    ok, row = sweep.check(OffByAPercent, case, chunk)
    assert not ok and row["errors_h_C_n_m"][0] > row["tolerances_h_C_n_m"][0]
    assert row["case"]["seq_len"] == case.seq_len and row["chunk"] == chunk  # enough to replay it
    assert sweep.check(native, case, chunk)[0]


def test_the_preparation_bisection_and_scan_probes_find_nothing_on_the_cpu():
    res = run_script("bisect_mma_operands.py")
    assert res["first_bad"] is None and len(res["rows"]) > 30 and res["rows"][-1]["step"] == "vT"
    assert run_script("probe_scan_views.py")["bad"] == {}
