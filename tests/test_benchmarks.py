"""The benchmark scripts run (tiny shapes, CPU) and report what they claim; the README's and docs' performance
tables are the ones rendered from the results file.

Timings are not asserted (they mean something only on the GPU machine).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def run_script(name: str, *args: str, stdin: str | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(BENCH / name), *args], capture_output=True, text=True, env=env,
                         timeout=300, input=stdin)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def numbers(res: dict, *keys: str) -> None:
    for k in keys:
        assert isinstance(res[k], float) and res[k] == res[k], k  # present and not NaN


def common():
    sys.path.insert(0, str(BENCH))
    try:
        import common
    finally:
        sys.path.remove(str(BENCH))
    return common


def test_the_kernel_benchmark_times_every_kernel_that_runs_and_names_the_selected_one():
    res = run_script("bench_kernel.py", "--seqs", "64", "--heads", "1", "--dk", "8", "--dv", "8", "--iters", "1")
    numbers(res, "native_chunkwise_fwd_ms_S64", f"{res['selected']}_fwd_ms_S64")


def test_the_model_benchmark_reports_prefill_decode_memory_and_ratios_to_the_official(tmp_path):
    official = tmp_path / "official.json"
    official.write_text(json.dumps({"prefill_tok_s_S32": 1000.0, "decode_tok_s": 100.0}))
    res = run_script("bench_model.py", "--spec", "xlstm_tiny", "--prefill", "32", "--decode-steps", "2",
                     "--decode-rounds", "1", "--iters", "1", "--prefill-kernels", "native_chunkwise",
                     "--prefill-segments", "16", "--official", str(official), "--quantize", "4")
    numbers(res, "prefill_tok_s_S32", "prefill_peak_over_weights_GB_S32", "prefill_tok_s_S32_native_chunkwise",
            "prefill_peak_GB_S32_native_chunkwise_segment16", "decode_tok_s_ctx16", "decode_stream_tok_s_ctx16",
            "decode_tok_s_ctx16_native_step")
    assert res["prefill_peak_over_weights_GB_S32"] == pytest.approx(res["prefill_peak_GB_S32"] - res["weights_GB"])
    assert res["ratio_prefill_tok_s_S32_ours_over_official"] == pytest.approx(res["prefill_tok_s_S32"] / 1000)
    assert res["ratio_decode_stream_tok_s_ctx16_ours_over_official"] == pytest.approx(
        res["decode_stream_tok_s_ctx16"] / 100)
    numbers(res, "prefill_tok_s_S32_q4", "decode_stream_tok_s_ctx16_q4")  # the same after runner.quantize(4)
    assert res["weights_GB_q4"] < res["weights_GB"] / 4
    freed = res["active_before_quantize_GB_q4"] - res["active_after_quantize_GB_q4"]
    assert freed > 0.8 * (res["weights_GB"] - res["weights_GB_q4"])  # (exact: tests/runner/test_quantize_memory.py)


def test_the_model_benchmark_times_the_official_model_on_torch_in_the_same_run():
    pytest.importorskip("xlstm")
    res = run_script("bench_model.py", "--spec", "xlstm_7b", "--dims",
                     "embedding_dim=64,num_heads=2,num_blocks=2,vocab_size=128", "--prefill", "32", "--rounds", "1",
                     "--decode-steps", "2", "--decode-rounds", "1", "--iters", "1", "--official-torch", "--threads", "1")
    assert res["official"]["params_B"] == res["params_B"] and res["official"]["threads"] == 1
    numbers(res["official"], "prefill_tok_s_S32", "decode_tok_s")
    assert res["ratio_prefill_tok_s_S32_ours_over_official"] == pytest.approx(
        res["prefill_tok_s_S32"] / res["official"]["prefill_tok_s_S32"])


def test_the_training_benchmark_runs_ours_and_the_official_each_in_a_fresh_process(tmp_path):
    out = tmp_path / "train.json"
    res = run_script("bench_train.py", "--shapes", "tiny", "--steps", "1", "--warm", "0", "--out", str(out))
    tiny = res["shapes"]["tiny"]
    for side in ("ours", "official"):
        assert "error" not in tiny[side], tiny[side]
        numbers(tiny[side], "train_tok_s", "peak_GB", "first_step_s", "start_to_first_step_s", "loss_first")
        assert tiny[side]["start_to_first_step_s"] > tiny[side]["first_step_s"]  # imports and model build too
    assert tiny["ours"]["params_B"] == pytest.approx(tiny["official"]["params_B"])  # the same architecture
    table = common().train_table({"train": json.loads(out.read_text())})
    assert "| tokens/s |" in table and "| peak memory |" in table and "process start to first step" in table


def test_the_distributed_benchmark_matches_the_unsharded_model_on_one_rank():
    res = run_script("bench_distributed.py", "--prefill", "32", "--decode-steps", "2", "--check")
    assert res["ranks"] == 1 and res["max_logit_diff_vs_unsharded"] == 0.0
    numbers(res, "prefill_tok_s_S32", "decode_tok_s")


def test_the_profile_runs_decode_and_prefill_per_setting():
    numbers(run_script("profile.py", "decode", "--tokens", "2"), "wall_ms_per_token", "tok_s")
    res = run_script("profile.py", "prefill", "--seq-len", "40", "--segments", "16,40", "--eval-ahead", "0,1")
    assert {(s["segment"], s["eval_ahead"]) for s in res["settings"]} == {(16, 0), (16, 1), (40, 0), (40, 1)}
    assert all(s["tok_s"] > 0 and s["peak_over_weights_GB"] > 0 for s in res["settings"])


def test_the_profile_summarises_ncu_and_nsys_per_kernel_and_call():
    ncu = ('"ID","Kernel Name","Metric Unit","Metric Value"\n"0","gemv","usecond","3.5"\n'
           '"1","step","nsecond","1,500"\n"2","gemv","usecond","2.5"\n')
    res = run_script("profile.py", "ncu", "--calls", "2", stdin=ncu)
    assert res["gpu_busy_us_per_call"] == 3.75 and [k["name"] for k in res["kernels"]] == ["gemv", "step"]
    nsys = ('"Time (%)","Total Time (ns)","Instances","Avg (ns)","Med (ns)","Min (ns)","Max (ns)",'
            '"StdDev (ns)","Name"\n'
            '"75.0","9000","40","225","225","200","250","10","gemv_single<bf16>"\n'
            '"25.0","3000","4","750","750","700","800","10","xlstm_mlstm_step"\n')
    res = run_script("profile.py", "nsys", "--calls", "4", stdin=nsys)
    assert res["gpu_busy_us_per_call"] == 3.0 and res["launches_per_call"] == 11.0
    assert res["kernels"][0] == {"name": "gemv_single<bf16>", "us_per_call": 2.25, "launches": 10.0, "share": 0.75}


def test_the_parity_script_agrees_with_the_official_model_at_a_small_size_on_the_cpu():
    pytest.importorskip("xlstm")
    res = run_script("parity_7b.py", "--device", "cpu", "--dtype", "float32", "--official-kernels", "native",
                     "--embedding-dim", "64", "--num-heads", "2", "--vocab-size", "128", "--blocks", "2",
                     "--prompt-len", "20", "--generate", "3")
    assert res["rel_max_diff"] < 1e-4 and res["argmax_agreement"] == 1.0 and res["identical_prefix"] == 3


def test_the_model_benchmark_serves_a_conversation_and_concurrent_clients_over_http():
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    res = run_script("bench_model.py", "--serve", "--spec", "xlstm_tiny", "--serve-turns", "3", "--serve-turn-tokens",
                     "16", "--serve-clients", "1,4", "--serve-prompt", "8", "--serve-tokens", "4")
    assert res["cached_tokens_cache"] == [0, 15, 31]  # each turn resumes from the last turn's prompt
    assert res["cached_tokens_nocache"] == [0, 0, 0] and len(res["ttft_s_cache"]) == len(res["ttft_s_nocache"]) == 3
    numbers(res, "tok_s_clients1", "tok_s_clients4", "state_MB")
    table = common().serve_table({"serve": res})
    assert "| 3 | 48 | 31 |" in table and "| 4 | " in table and f"{res['state_MB']:.4g} MB" in table


def test_the_readme_and_docs_tables_are_rendered_from_the_results_file(tmp_path):
    c = common()
    results = json.loads((BENCH / "results" / "nvidia-h200.json").read_text())
    for rel in c.TABLES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    assert c.write_tables(results, tmp_path) == []  # nothing to change: the files hold the rendered tables
    summary = c.summary_table(results)
    assert "`cuda_tc_chunkwise`" in summary and "| 7B bfloat16 prefill, S=4096: tokens/s |" in summary


def test_the_docs_cpu_table_is_rendered_from_the_cpu_results_file_and_leaves_the_gpu_tables(tmp_path):
    c = common()
    results = json.loads((BENCH / "results" / "cpu-x86_64-x2.json").read_text())
    assert results["kind"] == "cpu" and results["official"]["prefill_tok_s_S1024"] > 0  # measured in the same run
    for rel in c.TABLES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    assert c.write_tables(results, tmp_path) == []
    table = c.cpu_table(results)
    assert "| prefill, S=1024: tokens/s |" in table and "| same, 4-bit weights |" in table
    emptied = (tmp_path / "docs/performance.md").read_text().replace(table, "")
    (tmp_path / "docs/performance.md").write_text(emptied)
    assert c.write_tables(results, tmp_path) == ["docs/performance.md"]  # only the CPU table is rewritten
    assert (tmp_path / "docs/performance.md").read_text() == (ROOT / "docs/performance.md").read_text()


def test_assembling_a_results_file_counts_the_gpu_tests(tmp_path):
    c = common()
    (tmp_path / "a.log").write_text("....... [ 43%]\n....\n")  # cut off by its time limit
    (tmp_path / "b.log").write_text("..F\n= 1 failed, 2 passed, 1 error in 3.10s =\n")
    official = tmp_path / "official.json"
    official.write_text(json.dumps({"device": "GPU", "kernel": "k", "chunkwise_fwd_ms_S64": 2.0}))
    kernel = tmp_path / "kernel.json"
    kernel.write_text(json.dumps({"selected": "x", "x_fwd_ms_S64": 1.0, "mlx": "0"}))
    out = tmp_path / "r.json"
    c.main(["assemble", "--machine", "m", "--official", str(official), "--kernel", str(kernel), "--tests",
            str(tmp_path / "a.log"), str(tmp_path / "b.log"), "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["tests"] == {"passed": 13, "failed": 1, "errors": 1} and res["gpu"] == "GPU"
    assert "| 1.000 ms | 2.000 ms | 0.50 |" in c.summary_table(res)


def test_the_mad_doc_table_is_rendered_from_runs_files_next_to_the_docs_own_published_scores(tmp_path):
    mod = common()

    def run(spec, lr, acc, key):
        return {"key": key, "spec": spec, "task": "compression", "setting": "baseline", "lr": lr, "weight_decay": 0.0,
                "test_accuracy": acc, "parameters": 7, "protocol_run": False, "seconds": 30 * acc,
                "budget": {"epochs": 20, "settings": 0.3, "examples": 1.0, "learning_rates": [lr],
                           "weight_decays": [0.0], "width": 128, "batch_size": 128}}
    first, second = tmp_path / "mad-1.runs.jsonl", tmp_path / "mad-2.runs.jsonl"
    first.write_text(json.dumps(run("a", 1e-3, 0.25, "k1")) + "\n" + '{"key": "cut sh')
    second.write_text(json.dumps(run("b", 1e-3, 0.5, "k2")) + "\n" + json.dumps(run("a", 1e-3, 0.25, "k1")) + "\n")
    runs = mod.merged_runs([str(first), str(second)])
    assert sorted(r["key"] for r in runs) == ["k1", "k2"], "each run once, a cut line skipped"
    doc = tmp_path / "mad.md"
    paper = ("<!-- paper:mad -->\n| task | MHA | Hyena |\n| --- | --- | --- |\n| compression | 0.41 | n/a |\n"
             "| mean | .6 | 0.5 |\n<!-- /paper -->\n")
    doc.write_text("# MAD\n<!-- table:mad -->\nold\n<!-- /table -->\n" + paper)
    assert mod.published_scores(doc.read_text()) == {"MHA": {"compression": 0.41, "mean": 0.6}, "Hyena": {"mean": 0.5}}
    assert mod.write_mad_table(runs, doc) and not mod.write_mad_table(runs, doc), "a second write changes nothing"
    text = doc.read_text()
    assert "old" not in text and text.endswith(paper)
    assert "| compression (1) | 0.250 | 0.500 | 0.410 | — |" in text
    assert "| **MAD score (mean)** | 0.250 | 0.500 | 0.600 | 0.500 |" in text and "not comparable" in text
    assert "| seconds per run (median) | 8 | 15 |  |  |" in text


def test_the_shipped_mad_doc_has_the_blocks_the_generator_fills():
    mod = common()
    text = (ROOT / "docs" / "mad.md").read_text()
    assert "<!-- table:mad -->" in text and "<!-- /table -->" in text
    assert all(0 <= v <= 1 for scores in mod.published_scores(text).values() for v in scores.values())
