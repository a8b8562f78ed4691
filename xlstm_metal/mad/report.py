"""MAD scores from finished runs (mad-lab ``mad/analysis.py``): per spec, task and setting the best run of the
learning-rate × weight-decay sweep; a task's MAD score is the mean of those best accuracies over its settings.
Written as ``mad.json``, ``mad.txt`` (a table), ``mad.md`` (a markdown table over the settings every spec finished,
optionally next to published scores) and ``mad.png`` (a chart, when matplotlib is installed); every output says
whether the runs follow the protocol or a reduced budget.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..graph import format_table
from .settings import LEARNING_RATES, WEIGHT_DECAYS, task_settings
from .tasks import TASKS


def best_of(runs: list[dict]) -> list[dict]:
    """Per (spec, task, setting) the run with the highest test accuracy."""
    best: dict[tuple, dict] = {}
    for r in runs:
        k = (r["spec"], r["task"], r["setting"])
        if k not in best or r["test_accuracy"] > best[k]["test_accuracy"]:
            best[k] = r
    return list(best.values())


def mad_scores(runs: list[dict]) -> dict[str, dict[str, float]]:
    """``{spec: {task: score, ..., "mean": mean over tasks}}`` with scores the mean best accuracy per setting."""
    per: dict[str, dict[str, list[float]]] = {}
    for r in best_of(runs):
        per.setdefault(r["spec"], {}).setdefault(r["task"], []).append(r["test_accuracy"])
    scores = {spec: {task: float(np.mean(v)) for task, v in tasks.items()} for spec, tasks in per.items()}
    for s in scores.values():
        s["mean"] = float(np.mean(list(s.values())))
    return scores


def comparable(runs: list[dict]) -> bool:
    """Whether every score averages the protocol's runs: all of a task's settings, each with the whole grid."""
    if not runs or not all(r.get("protocol_run") for r in runs):
        return False
    grid = {(lr, wd) for lr in LEARNING_RATES for wd in WEIGHT_DECAYS}
    for spec, task in {(r["spec"], r["task"]) for r in runs}:
        made = {}
        for r in runs:
            if (r["spec"], r["task"]) == (spec, task):
                made.setdefault(r["setting"], set()).add((r["lr"], r["weight_decay"]))
        if made.keys() != {s.label() for s in task_settings(task)} or any(v != grid for v in made.values()):
            return False
    return True


def headline(runs: list[dict]) -> str:
    if comparable(runs):
        return "MAD protocol: scores comparable with published MAD scores"
    return "REDUCED BUDGET: not comparable with published MAD scores"


def table(runs: list[dict]) -> str:
    scores = mad_scores(runs)
    specs = list(scores)
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    settings = {t: len({r["setting"] for r in runs if r["task"] == t}) for t in tasks}
    params = {s: max(r["parameters"] for r in runs if r["spec"] == s) for s in specs}
    rows = [["task (settings)"] + specs]
    rows += [[f"{t} ({settings[t]})"] + [f"{scores[s][t]:.3f}" if t in scores[s] else "-" for s in specs]
             for t in tasks]
    rows.append(["MAD score (mean)"] + [f"{scores[s]['mean']:.3f}" for s in specs])
    rows.append(["parameters (largest)"] + [f"{params[s]:,}" for s in specs])
    return headline(runs) + "\n" + format_table(rows)


def complete_cells(runs: list[dict]) -> tuple[list[dict], list[tuple[str, str]]]:
    """The runs of the (task, setting) cells that every spec finished over the whole learning-rate x weight-decay
    grid (all the pairs the task's runs used), and the cells left out: a sweep cut short compares like with like."""
    specs = {r["spec"] for r in runs}
    grid: dict[str, set] = {}
    made: dict[tuple, dict[str, set]] = {}
    for r in runs:
        grid.setdefault(r["task"], set()).add((r["lr"], r["weight_decay"]))
        made.setdefault((r["task"], r["setting"]), {}).setdefault(r["spec"], set()).add((r["lr"], r["weight_decay"]))
    full = {cell for cell, by in made.items() if by.keys() == specs and all(v == grid[cell[0]] for v in by.values())}
    return [r for r in runs if (r["task"], r["setting"]) in full], [c for c in made if c not in full]


def _budget_text(runs: list[dict]) -> str:
    texts = []
    for b in {json.dumps(r["budget"], sort_keys=True): r["budget"] for r in runs}.values():
        if not {"epochs", "settings", "examples", "learning_rates", "weight_decays", "width", "batch_size"} <= set(b):
            texts.append("not recorded")
            continue
        grid = f"lr {{{', '.join(f'{x:g}' for x in b['learning_rates'])}}} x wd " \
               f"{{{', '.join(f'{x:g}' for x in b['weight_decays'])}}}"
        texts.append(f"up to {b['epochs']} epochs, {b['settings']:g} of each task's settings, {b['examples']:g} of "
                     f"the examples, {grid}, width {b['width']}, batch {b['batch_size']}")
    return "; ".join(texts)


def markdown(runs: list[dict], published: dict[str, dict[str, float]] | None = None) -> str:
    """A markdown table of MAD scores per task and their mean over the cells every spec finished, with
    ``published`` scores (``{architecture: {task or "mean": score}}``) as further columns, then what it covers."""
    kept, left_out = complete_cells(runs)
    published = published or {}
    if not kept:
        return "No setting was finished by every spec over the whole grid: nothing to compare yet."
    scores = mad_scores(kept)
    specs, tasks = sorted(scores), [t for t in TASKS if any(r["task"] == t for r in kept)]
    settings = {t: len({r["setting"] for r in kept if r["task"] == t}) for t in tasks}
    params = {s: max(r["parameters"] for r in kept if r["spec"] == s) for s in specs}
    header = [f"`{s}`" for s in specs] + [f"{a} (paper)" for a in published]

    def cell(value) -> str:
        return "—" if value is None else f"{value:.3f}"
    rows = [f"| task (settings) | {' | '.join(header)} |", "|---" * (len(header) + 1) + "|"]
    for t in tasks:
        values = [scores[s].get(t) for s in specs] + [published[a].get(t) for a in published]
        rows.append(f"| {t} ({settings[t]}) | {' | '.join(map(cell, values))} |")
    means = [scores[s]["mean"] for s in specs] + [published[a].get("mean") for a in published]
    rows.append(f"| **MAD score (mean)** | {' | '.join(map(cell, means))} |")
    rows.append(f"| parameters (largest) | {' | '.join([f'{params[s]:,}' for s in specs] + [''] * len(published))} |")
    times = [[r["seconds"] for r in kept if r["spec"] == s and "seconds" in r] for s in specs]
    seconds = [f"{np.median(t):.0f}" if t else "—" for t in times]
    rows.append(f"| seconds per run (median) | {' | '.join(seconds + [''] * len(published))} |")
    notes = [f"{headline(kept)}. Budget: {_budget_text(kept)}; best of the grid per setting, {len(kept)} runs."]
    if left_out:
        notes.append("Left out (not finished by every spec over the whole grid): "
                     + ", ".join(f"{t} {s}" for t, s in left_out) + ".")
    return "\n".join(rows) + "\n\n" + "\n".join(notes)


def _write_atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def chart(runs: list[dict], path: Path) -> str | None:
    """A bar chart of the scores per task and spec at ``path``; returns a notice instead when matplotlib is
    missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart (pip install matplotlib)"
    scores = mad_scores(runs)
    specs, tasks = list(scores), list(dict.fromkeys(r["task"] for r in runs)) + ["mean"]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(tasks) * max(1, len(specs)) / 2), 4))
    width = 0.8 / max(1, len(specs))
    for i, s in enumerate(specs):
        ax.bar(np.arange(len(tasks)) + i * width, [scores[s].get(t, 0) for t in tasks], width, label=s)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("MAD score (accuracy)")
    ax.set_title(headline(runs), fontsize=9, color="black" if comparable(runs) else "darkred")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
    return None


def write_report(runs: list[dict], out: Path) -> list[str]:
    """``mad.json``, ``mad.txt`` and ``mad.png`` in ``out``; returns notices (e.g. a skipped chart)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {"protocol_comparable": comparable(runs), "note": headline(runs), "scores": mad_scores(runs),
               "budgets": list({json.dumps(r["budget"], sort_keys=True): r["budget"] for r in runs}.values()),
               "best_runs": sorted(best_of(runs), key=lambda r: (r["spec"], r["task"], r["setting"])),
               "runs": len(runs)}
    _write_atomic(out / "mad.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
    _write_atomic(out / "mad.txt", lambda f: f.write((table(runs) + "\n").encode()))
    _write_atomic(out / "mad.md", lambda f: f.write((markdown(runs) + "\n").encode()))
    notice = chart(runs, out / "mad.png")
    return [notice] if notice else []
