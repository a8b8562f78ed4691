"""What the benchmark scripts share (timing, specs, JSON out), and the results file of one machine kind: assembled
from the parts one GPU job measures, rendered as the tables of README.md and docs/performance.md.

    python benchmarks/common.py assemble --machine nvidia-h200 --official o.json --kernel k.json --model m.json \
        --out benchmarks/results/nvidia-h200.json
    python benchmarks/common.py tables benchmarks/results/nvidia-h200.json --write   # README + docs tables
    python benchmarks/common.py mad benchmarks/results/mad/*.jsonl --write   # docs/mad.md from MAD runs
    python benchmarks/common.py assemble --machine cpu-x86_64-x2 --model m.json --out benchmarks/results/cpu-x86_64-x2.json
        # a CPU run: bench_model.py --official-torch measured the official in the same run (docs' CPU table)
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, warm: int = 2, iters: int = 5) -> float:
    """Mean seconds per call of ``fn`` after ``warm`` untimed calls (``fn`` must evaluate its MLX work)."""
    for _ in range(warm):
        fn()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def spec_doc(spec: str) -> dict:
    """The YAML document of ``spec`` (a shipped name or a path)."""
    import yaml

    from xlstm_metal.spec import shipped_spec_path

    return yaml.safe_load(open(shipped_spec_path(spec) or spec))


def sized_spec(spec: str, dims: str):
    """``spec`` (a shipped name or a path) with the ``name=value`` pairs of ``dims`` replacing its dims."""
    if not dims:
        return spec
    import yaml

    doc = spec_doc(spec)
    for pair in dims.split(","):
        key, value = pair.split("=")
        if key not in doc.get("dims", {}):
            raise SystemExit(f"--dims: {spec} has no dim {key!r} (dims: {', '.join(doc.get('dims', {}))})")
        doc["dims"][key] = yaml.safe_load(value)
    return doc


def emit(result: dict, out: str | None = None) -> None:
    """Print the result as JSON, and also write it to ``out`` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


def with_ratios(res: dict, official: dict) -> dict:
    """``ratio_<key>_ours_over_official`` for every number both results hold under the same key."""
    for k, v in list(res.items()):
        if isinstance(v, float) and isinstance(official.get(k), (int, float)) and official[k]:
            res[f"ratio_{k}_ours_over_official"] = v / official[k]
    return res


# ---------------------------------------------------------------------- results/<machine-kind>.json

PARTS = ("official", "kernel", "model", "prefill_memory", "train", "serve")


def test_counts(logs: list[str]) -> dict:
    """Passed / failed / error counts of pytest logs (each log's last summary line; a log cut off by a time limit
    counts its progress dots as passed)."""
    counts = {"passed": 0, "failed": 0, "errors": 0}
    for log in logs:
        text = Path(log).read_text()
        summary = re.findall(r"^=*\s*(\d+ (?:passed|failed|errors?).*?)(?: in [\d.]+s.*)?$", text, flags=re.M)
        if summary:
            for n, what in re.findall(r"(\d+) (passed|failed|errors?)", summary[-1]):
                counts["errors" if what.startswith("error") else what] += int(n)
        else:
            dots = [line for line in text.splitlines() if re.fullmatch(r"[.]+( +\[.*\])?", line)]
            counts["passed"] += sum(line.count(".") for line in dots)
    return counts


def assemble(machine: str, parts: dict[str, dict]) -> dict:
    """One machine kind's results: the official baseline and each of our parts (GPU tests, kernel, model, prefill
    memory, train), measured in one job."""
    official = parts.get("official") or parts.get("model", {}).get("official", {})
    if official and "official" not in parts:
        parts = {"official": official, **parts}
    cpu = str(parts.get("model", {}).get("device", "")).startswith("Device(cpu")
    res = {"machine": machine, "kind": "cpu" if cpu else "gpu", "gpu": None if cpu else official.get("device"),
           "torch": official.get("torch"),
           "official_kernel": official.get("kernel"), "mlx": parts.get("model", parts.get("kernel", {})).get("mlx")}
    for name, part in parts.items():
        res[name] = {k: v for k, v in part.items() if k != "official"}
    return res


def _fmt(v, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "tok/s":
        return f"{v / 1e3:.1f}k tok/s" if v >= 1e4 else f"{v:.0f} tok/s" if v >= 100 else f"{v:.1f} tok/s"
    return f"{v:.3f} ms" if v < 10 else f"{v:.2f} ms"


def _row(what: str, ours, official, unit: str) -> str:
    ratio = "" if ours is None or not official else f"{(ours / official):.2f}"
    return f"| {what} | {_fmt(ours, unit)} | {_fmt(official, unit)} | {ratio} |"


def summary_table(r: dict) -> str:
    """The README's table: the selected chunkwise kernel and the 7B model, ours against the official, same run."""
    kern, model, off = r.get("kernel", {}), r.get("model", {}), r.get("official", {})
    sel = kern.get("selected")
    seqs = sorted({int(m) for k in kern for m in re.findall(rf"^{sel}_fwd_ms_S(\d+)$", k)})
    rows = ["| measurement | xlstm_metal | official | ours / official |", "| --- | --- | --- | --- |"]
    for S in seqs:
        what = (f"chunkwise mLSTM forward, {kern.get('dtype')}, {kern.get('heads')} heads, DK {kern.get('dk')}, "
                f"DV {kern.get('dv')}, S={S} (`{sel}`): time") if S == seqs[0] else f"same, S={S}"
        rows.append(_row(what, kern.get(f"{sel}_fwd_ms_S{S}"), off.get(f"chunkwise_fwd_ms_S{S}"), "ms"))
    spec = "7B" if model.get("spec") == "xlstm_7b" else model.get("spec")
    pre = sorted(int(m) for k in model for m in re.findall(r"^prefill_tok_s_S(\d+)$", k))
    for S in pre:
        what = f"{spec} {model.get('dtype')} prefill, S={S}: tokens/s"
        over = model.get(f"prefill_peak_over_weights_GB_S{S}")
        if over is not None and not off.get(f"prefill_tok_s_S{S}"):
            what += f" (peak: weights + {over:.2f} GB)"
        rows.append(_row(what, model.get(f"prefill_tok_s_S{S}"), off.get(f"prefill_tok_s_S{S}"), "tok/s"))
    ctxs = sorted(int(m) for k in model for m in re.findall(r"^decode_stream_tok_s_ctx(\d+)$", k))
    for c in ctxs:
        what = f"{spec} decode, batch 1, {c} tokens of context (`runner.stream`): tokens/s"
        rows.append(_row(what, model.get(f"decode_stream_tok_s_ctx{c}"), off.get("decode_tok_s") if c == ctxs[0]
                         else None, "tok/s"))
    return "\n".join(rows)


def kernel_table(r: dict) -> str:
    """Every chunkwise kernel that ran, per sequence length, with the official kernel's time."""
    kern, off = r.get("kernel", {}), r.get("official", {})
    names = sorted({k.split("_fwd_ms_S")[0] for k in kern if "_fwd_ms_S" in k})
    seqs = sorted({int(k.rsplit("S", 1)[1]) for k in kern if "_fwd_ms_S" in k})
    rows = ["| kernel | " + " | ".join(f"S={S}" for S in seqs) + " |", "|---" * (len(seqs) + 1) + "|"]
    for n in names + ["official"]:
        get = (lambda S: off.get(f"chunkwise_fwd_ms_S{S}")) if n == "official" else (
            lambda S, n=n: kern.get(f"{n}_fwd_ms_S{S}"))
        label = f"official `{r.get('official_kernel')}`" if n == "official" else f"`{n}`"
        rows.append(f"| {label} | " + " | ".join(_fmt(get(S), "ms") for S in seqs) + " |")
    return "\n".join(rows)


def model_table(r: dict) -> str:
    """The model benchmark's prefill (tokens/s, peak memory; default, per pinned kernel, per segment length) and
    decode (each token evaluated before the next is built, per pinned step kernel; generation's ``runner.stream``)."""
    model = r.get("model", {})
    rows = ["| measurement | setting | tokens/s | peak memory |", "| --- | --- | --- | --- |"]
    for k, v in model.items():
        if m := re.fullmatch(r"prefill_tok_s_S(\d+)(?:_(?!segment\d)(\w+?))?(?:_segment(\d+))?", k):
            peak = model.get(f"prefill_peak_GB_S{m[1]}{k.split(f'S{m[1]}')[1]}")
            how = ", ".join(filter(None, [m[2] and f"`{m[2]}`", m[3] and f"{m[3]}-token segments"])) or "default"
            peak = "" if peak is None else f"{peak:.2f} GB"
            rows.append(f"| prefill, S={m[1]} | {how} | {_fmt(v, 'tok/s')} | {peak} |")
    for k, v in model.items():
        if isinstance(v, float) and (m := re.fullmatch(r"decode(_stream)?_tok_s_ctx(\d+)(_\w+?)?", k)):
            how = "`runner.stream`" if m[1] else "each token evaluated" + (f", `{m[3][1:]}`" if m[3] else "")
            rows.append(f"| decode, {m[2]} tokens of context | {how} | {_fmt(v, 'tok/s')} | |")
    if "weights_GB" in model:
        rows.append(f"| weights | {model.get('dtype')} | | {model['weights_GB']:.2f} GB |")
    return "\n".join(rows)


def cpu_table(r: dict) -> str:
    """A CPU run (``bench_model.py --official-torch``): prefill per length and decode, ours against the official
    on torch, timed in turns; and the same after ``runner.quantize`` where measured."""
    model, off = r.get("model", {}), r.get("official", {})
    rows = ["| measurement | xlstm_metal | official (torch) | ours / official |", "| --- | --- | --- | --- |"]
    bits = sorted({m for k in model for m in re.findall(r"_q(\d+)$", k)})
    for S in sorted(int(m) for k in model for m in re.findall(r"^prefill_tok_s_S(\d+)$", k)):
        rows.append(_row(f"prefill, S={S}: tokens/s", model[f"prefill_tok_s_S{S}"], off.get(f"prefill_tok_s_S{S}"),
                         "tok/s"))
        rows += [_row(f"same, {b}-bit weights", model.get(f"prefill_tok_s_S{S}_q{b}"), None, "tok/s") for b in bits]
    for c in sorted(int(m) for k in model for m in re.findall(r"^decode_stream_tok_s_ctx(\d+)$", k)):
        rows.append(_row(f"decode after {c} tokens (`runner.stream`): tokens/s", model[f"decode_stream_tok_s_ctx{c}"],
                         off.get("decode_tok_s"), "tok/s"))
        rows += [_row(f"same, {b}-bit weights", model.get(f"decode_stream_tok_s_ctx{c}_q{b}"), None, "tok/s")
                 for b in bits]
    return "\n".join(rows)


def prefill_memory_table(r: dict) -> str:
    """A long prefill per segment length and layers left in flight: tokens/s and the peak over the weights."""
    pm = r.get("prefill_memory", {})
    rows = [f"| S={pm.get('seq_len')}: segment | layers in flight | tokens/s | peak over the weights |",
            "| --- | --- | --- | --- |"]
    for s in pm.get("settings", []):
        rows.append(f"| {s['segment']} | {s['eval_ahead']} | {_fmt(s['tok_s'], 'tok/s')} | "
                    f"{s['peak_over_weights_GB']:.2f} GB |")
    return "\n".join(rows)


def train_table(r: dict) -> str:
    """Training, ours against the official in the same run, per shape: tokens/s, peak memory, start to first step
    (and, where measured, ours with the step not compiled, and with every block checkpointed)."""
    shapes = r.get("train", {}).get("shapes", {})
    if not shapes:
        return "Not measured yet (`gpu_job.sh train-a train-b`)."
    rows = ["| shape | measurement | xlstm_metal | official | ours / official |", "| --- | --- | --- | --- | --- |"]
    measures = (("tokens/s", "train_tok_s", lambda v: _fmt(v, "tok/s")),
                ("peak memory", "peak_GB", lambda v: f"{v:.2f} GB"),
                ("process start to first step", "start_to_first_step_s", lambda v: f"{v:.1f} s"))
    for name, s in shapes.items():
        what = (f"{name}: d {s['embedding_dim']}, {s['num_blocks']} blocks, {s['num_heads']} heads, vocab "
                f"{s['vocab']}, batch {s['batch']} x {s['seq_len']}, {s['dtype']}")
        off = s.get("official", {})
        for side, how in (("ours", ""), ("ours_eager", ", our step not compiled"),
                          ("ours_ckpt", ", ours with --checkpoint-blocks")):
            if side not in s:
                continue
            ours = s[side]
            for label, key, fmt in measures:
                a, b = ours.get(key), off.get(key)
                cell = lambda v, res: fmt(v) if v is not None else ("failed" if "error" in res else "—")  # noqa
                ratio = f"{a / b:.2f}" if a is not None and b else ""
                rows.append(f"| {what} | {label}{how} | {cell(a, ours)} | {cell(b, off)} | {ratio} |")
                what = ""
    return "\n".join(rows)


def serve_table(r: dict) -> str:
    """The server (``bench_model.py --serve``): time to first token per turn of a conversation with the session
    state cache on and off, then aggregate generated tokens/s per number of concurrent clients."""
    sv = r.get("serve")
    if not sv:
        return "Not measured yet (`gpu_job.sh serve`)."
    on, off = sv.get("ttft_s_cache", []), sv.get("ttft_s_nocache", [])
    cached = sv.get("cached_tokens_cache", [])
    rows = ["| turn | prompt tokens | cached (cache on) | first token, cache on | first token, cache off |",
            "| --- | --- | --- | --- | --- |"]
    for i in range(max(len(on), len(off))):
        get = (lambda xs: _fmt(xs[i] * 1e3, "ms") if i < len(xs) else "—")
        rows.append(f"| {i + 1} | {(i + 1) * sv.get('turn_tokens', 0)} | {cached[i] if i < len(cached) else '—'} | "
                    f"{get(on)} | {get(off)} |")
    rows += ["", f"| concurrent clients ({sv.get('client_prompt_tokens')}-token prompts, "
                 f"{sv.get('client_tokens')} tokens each) | generated tokens/s, all clients |", "| --- | --- |"]
    for k, v in sv.items():
        if m := re.fullmatch(r"tok_s_clients(\d+)", k):
            rows.append(f"| {m[1]} | {_fmt(v, 'tok/s')} |")
    if "state_MB" in sv:
        rows += ["", f"One conversation's state: {sv['state_MB']:.4g} MB, whatever its length."]
    return "\n".join(rows)


TABLES = {"README.md": {"summary": summary_table},
          "docs/performance.md": {"summary": summary_table, "kernels": kernel_table, "model": model_table,
                                  "prefill_memory": prefill_memory_table, "serve": serve_table, "train": train_table,
                                  "cpu": cpu_table}}
CPU_TABLES = {"cpu"}  # rendered from a CPU results file ("kind": "cpu"); the others from a GPU one


def write_tables(results: dict, root: Path = ROOT) -> list[str]:
    """Replace each ``<!-- table:NAME -->`` ... ``<!-- /table -->`` block of the README and docs/performance.md
    with the table rendered from ``results``; returns the files changed."""
    changed = []
    for rel, tables in TABLES.items():
        path = root / rel
        if not path.exists():
            continue
        text = path.read_text()
        new = text
        for name, render in tables.items():
            if (name in CPU_TABLES) != (results.get("kind") == "cpu"):
                continue
            new = re.sub(rf"(<!-- table:{name} -->\n)(?:.*?\n)?(<!-- /table -->)",
                         lambda m, t=render(results): m.group(1) + t + "\n" + m.group(2), new, flags=re.S)
        if new != text:
            path.write_text(new)
            changed.append(rel)
    return changed


# ---------------------------------------------------------------------- docs/mad.md

def merged_runs(paths: list[str]) -> list[dict]:
    """The MAD runs of several ``runs.jsonl`` files (e.g. one per device call), each run once."""
    runs: dict[str, dict] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            runs.setdefault(record["key"], record)
    return list(runs.values())


def published_scores(text: str) -> dict[str, dict[str, float]]:
    """``{architecture: {task or "mean": score}}`` from the markdown table between ``<!-- paper:mad -->`` and
    ``<!-- /paper -->`` (first column the task, one column per architecture; cells that are no number skipped)."""
    block = re.search(r"<!-- paper:mad -->\n(.*?)<!-- /paper -->", text, flags=re.S)
    lines = [line for line in (block[1] if block else "").splitlines() if line.startswith("|")]
    if len(lines) < 3:
        return {}
    names = [c.strip() for c in lines[0].strip("|").split("|")][1:]
    scores: dict[str, dict[str, float]] = {n: {} for n in names}
    for line in lines[2:]:
        task, *cells = [c.strip() for c in line.strip("|").split("|")]
        for name, c in zip(names, cells):
            if re.fullmatch(r"\d*\.?\d+", c):
                scores[name][task.strip("`*")] = float(c)
    return {n: v for n, v in scores.items() if v}


def write_mad_table(runs: list[dict], doc: Path) -> bool:
    """Replace ``<!-- table:mad -->`` ... ``<!-- /table -->`` in ``doc`` with the MAD table of ``runs`` next to the
    doc's own published scores; returns whether the doc changed."""
    from xlstm_metal.mad.report import markdown

    text = doc.read_text()
    table = markdown(runs, published_scores(text))
    new = re.sub(r"(<!-- table:mad -->\n)(?:.*?\n)?(<!-- /table -->)", lambda m: m[1] + table + "\n" + m[2], text,
                 flags=re.S)
    if new != text:
        doc.write_text(new)
    return new != text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("assemble", help="one results file from the parts of one GPU job")
    a.add_argument("--machine", required=True)
    for part in PARTS:
        a.add_argument(f"--{part.replace('_', '-')}", help=f"the {part} JSON")
    a.add_argument("--tests", nargs="*", default=[], help="pytest logs of the GPU test run")
    a.add_argument("--out")
    t = sub.add_parser("tables", help="print the tables of a results file (--write: into README.md and docs/)")
    t.add_argument("results")
    t.add_argument("--write", action="store_true")
    m = sub.add_parser("mad", help="the MAD table of runs.jsonl files (--write: into docs/mad.md)")
    m.add_argument("runs", nargs="+", help="runs.jsonl files of `xlstm-metal mad` (merged, each run once)")
    m.add_argument("--write", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "mad":
        runs, doc = merged_runs(args.runs), ROOT / "docs" / "mad.md"
        if args.write:
            print("updated:", "docs/mad.md" if write_mad_table(runs, doc) else "nothing")
        else:
            from xlstm_metal.mad.report import markdown

            print(markdown(runs, published_scores(doc.read_text()) if doc.exists() else {}))
        return
    if args.cmd == "assemble":
        parts = {n: json.loads(Path(f).read_text()) for n in PARTS if (f := getattr(args, n)) and Path(f).exists()}
        if args.tests:
            parts["tests"] = test_counts(args.tests)
        emit(assemble(args.machine, parts), args.out)
        return
    results = json.loads(Path(args.results).read_text())
    if args.write:
        print("updated:", ", ".join(write_tables(results)) or "nothing")
    else:
        for name, render in TABLES["docs/performance.md"].items():
            if (name in CPU_TABLES) == (results.get("kind") == "cpu"):
                print(f"## {name}\n\n{render(results)}\n")


if __name__ == "__main__":
    main()
