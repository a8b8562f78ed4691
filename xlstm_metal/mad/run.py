"""Train each architecture on each MAD task under the same budget and tabulate test accuracy."""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from ..plan import make_plan
from ..runtime import execute
from ..spec import SpecSource, read_source, shipped_spec_path
from ..graph import format_table
from ..train.loop import lr_schedule, make_step
from ..train.plot import svg_page
from .tasks import IGNORE, TASKS


@dataclass
class MadBudget:
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 30
    n_train: int = 4096
    n_test: int = 256
    seq_len: int | None = None  # None: each task's default
    seed: int = 0


@dataclass
class MadResult:
    spec: str
    task: str
    accuracy: float
    final_loss: float
    parameters: int
    seconds: float
    extra: dict = field(default_factory=dict)


def with_vocab(spec, vocab: int) -> SpecSource:
    """The spec with every embedding and lm_head resized to the task's vocabulary (file and lines kept, so a
    mistake in the spec is still reported at its file:line)."""
    if isinstance(spec, str) and "\n" not in spec and shipped_spec_path(spec):
        spec = shipped_spec_path(spec)
    src = read_source(spec)
    data = copy.deepcopy(src.data)

    def visit(nodes):
        for n in nodes if isinstance(nodes, list) else []:  # a malformed spec is left for load_spec to report
            if not isinstance(n, dict):
                continue
            if "repeat" in n:
                visit(n.get("nodes", []))
            elif n.get("type") == "embedding":
                n["num_embeddings"] = vocab
            elif n.get("type") == "lm_head":
                n["vocab_size"] = vocab
    visit(data.get("nodes") if isinstance(data, dict) else None)
    return SpecSource(data, src.file, src.lines)


def run_task(spec, task_name: str, budget: MadBudget) -> MadResult:
    from ..runner import xLSTMRunner

    task = TASKS[task_name]
    seq_len = budget.seq_len or task.seq_len
    x_train, y_train = task.make(budget.n_train, seq_len=seq_len, seed=budget.seed)
    x_test, y_test = task.make(budget.n_test, seq_len=seq_len, seed=budget.seed + 10_000)
    mx.random.seed(budget.seed)
    runner = xLSTMRunner.from_spec(with_vocab(spec, task.vocab_size), seed=budget.seed)
    graph, model = runner.graph, runner.model
    plan = make_plan(graph, x_train.shape[1], segment_len=None, training=True)
    schedule = lr_schedule(budget.lr, budget.steps, budget.warmup)
    opt = optim.AdamW(learning_rate=schedule, weight_decay=0.0)

    def loss_fn(model, x, y):
        logits = execute(graph, plan, x, training=True)[0][graph.outputs[0]].astype(mx.float32)
        keep = y != IGNORE
        ce = nn.losses.cross_entropy(logits, mx.where(keep, y, 0), reduction="none")
        return mx.sum(ce * keep) / mx.maximum(mx.sum(keep), 1)

    step = make_step(model, loss_fn, opt, grad_clip=1.0)
    rng = np.random.default_rng(budget.seed)
    t0 = time.perf_counter()
    loss = mx.array(0.0)
    for _ in range(budget.steps):
        idx = rng.integers(0, len(x_train), size=budget.batch_size)
        loss = step(mx.array(x_train[idx]), mx.array(y_train[idx]))
        mx.eval(loss, model.state, opt.state)
    seconds = time.perf_counter() - t0
    correct = total = 0
    for a in range(0, len(x_test), 64):
        xb, yb = x_test[a:a + 64], y_test[a:a + 64]
        plan = make_plan(graph, xb.shape[1], segment_len=None)
        logits = execute(graph, plan, mx.array(xb))[0][graph.outputs[0]]
        pred = np.array(mx.argmax(logits, axis=-1))
        keep = yb != IGNORE
        correct += int((pred[keep] == yb[keep]).sum())
        total += int(keep.sum())
    return MadResult(graph.name, task_name, correct / max(total, 1), float(loss.item()), runner.num_parameters(),
                     seconds)


def run_mad(specs: list, tasks: list[str], budget: MadBudget, progress=None) -> list[MadResult]:
    results = []
    for spec in specs:
        for task in tasks:
            results.append(run_task(spec, task, budget))
            if progress:
                progress(results[-1])
    return results


def table(results: list[MadResult]) -> str:
    specs = list(dict.fromkeys(r.spec for r in results))
    tasks = list(dict.fromkeys(r.task for r in results))
    acc = {(r.spec, r.task): r.accuracy for r in results}
    params = {r.spec: r.parameters for r in results}
    rows = [["task"] + specs] + [[t] + [f"{acc[(s, t)]:.3f}" for s in specs] for t in tasks]
    rows.append(["mean"] + [f"{np.mean([acc[(s, t)] for t in tasks]):.3f}" for s in specs])
    rows.append(["parameters"] + [f"{params[s]:,}" for s in specs])
    return format_table(rows)


def save(results: list[MadResult], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "mad.json").write_text(json.dumps([r.__dict__ for r in results], indent=2))
    (out / "mad.txt").write_text(table(results) + "\n")
    (out / "mad.svg").write_text(bar_chart_svg(results))


def bar_chart_svg(results: list[MadResult], width: int = 760, height: int = 340) -> str:
    specs = list(dict.fromkeys(r.spec for r in results))
    tasks = list(dict.fromkeys(r.task for r in results))
    acc = {(r.spec, r.task): r.accuracy for r in results}
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    pad, top, base = 40, 30, height - 60
    group = (width - 2 * pad) / max(1, len(tasks))
    bar = group * 0.8 / max(1, len(specs))
    parts = []
    for ti, t in enumerate(tasks):
        x0 = pad + ti * group + group * 0.1
        for si, s in enumerate(specs):
            h = acc[(s, t)] * (base - top)
            parts.append(f'<rect x="{x0 + si * bar:.1f}" y="{base - h:.1f}" width="{bar * 0.9:.1f}" height="{h:.1f}" '
                         f'fill="{colors[si % len(colors)]}"/>')
        parts.append(f'<text x="{x0 + group * 0.4:.1f}" y="{base + 14}" text-anchor="middle">{t}</text>')
    for si, s in enumerate(specs):
        parts.append(f'<rect x="{pad + si * 190}" y="{height - 28}" width="10" height="10" '
                     f'fill="{colors[si % len(colors)]}"/><text x="{pad + si * 190 + 14}" y="{height - 19}">{s}</text>')
    parts.append(f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" stroke="black"/>')
    return svg_page(width, height, "MAD test accuracy", parts)
