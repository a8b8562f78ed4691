"""The MAD sweep: every spec × task setting × (learning rate, weight decay) trained once, each finished run
appended as one JSON line to ``<out>/runs.jsonl`` (under a lock, one write, synced), so an interrupted sweep
resumes where it stopped: a rerun skips every run whose line is there.

Several processes may share one ``out`` (``workers``, or sweeps started side by side): each run is claimed
before it trains (``claims.py``), so each is made once, and a run whose process died is made by the next sweep.
A time limit stops the sweep between epochs; what finished is recorded.

A ``Budget`` other than the protocol's (fewer epochs, settings or examples, another grid, width or batch size)
labels every run it makes as not protocol-comparable.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..errors import InputError
from .claims import try_claim
from .data import setting_data
from .model import adapt_spec
from .settings import (BATCH_SIZE, EPOCHS, LEARNING_RATES, WEIGHT_DECAYS, WIDTH, Setting, spread, task_settings)
from .tasks import TASKS
from .training import train_run
from .workers import run_processes

RUNS_FILE = "runs.jsonl"
DATA_KEPT = 3  # settings whose data a worker keeps in memory


@dataclass(frozen=True)
class Budget:
    """How much of the protocol to run; the default is all of it."""
    epochs: int = EPOCHS
    settings: float = 1.0  # fraction of each task's settings, spread from the baseline (at least the baseline)
    examples: float = 1.0  # fraction of each setting's training and test examples
    learning_rates: tuple = LEARNING_RATES
    weight_decays: tuple = WEIGHT_DECAYS
    width: int = WIDTH
    batch_size: int = BATCH_SIZE

    @classmethod
    def scaled(cls, fraction: float, **overrides) -> "Budget":
        """``fraction`` of the protocol's epochs and of each task's settings (1: the protocol)."""
        if not 0 < fraction <= 1:
            raise InputError(f"--budget must be in (0, 1], got {fraction}")
        return replace(cls(epochs=max(1, round(EPOCHS * fraction)), settings=fraction), **overrides)

    @property
    def comparable(self) -> bool:
        """Whether results under this budget compare with published MAD scores."""
        return self == Budget()

    def label(self) -> str:
        if self.comparable:
            return "MAD protocol (comparable with published MAD scores)"
        changed = ", ".join(f"{k}={v}" for k, v in asdict(self).items() if v != getattr(Budget(), k))
        return f"reduced budget ({changed}): NOT comparable with published MAD scores"

    def task_settings(self, task: str) -> list[Setting]:
        every = task_settings(task)
        chosen = spread(every, max(1, round(len(every) * self.settings)))
        if self.examples == 1.0:
            return chosen
        return [replace(s, num_train_examples=max(1, round(s.num_train_examples * self.examples)),
                        num_test_examples=max(1, round(s.num_test_examples * self.examples))) for s in chosen]


@dataclass
class Run:
    """One planned run; ``key`` identifies it across restarts (spec content, setting, lr, wd and budget)."""
    spec: object
    spec_name: str
    spec_hash: str
    setting: Setting
    lr: float
    weight_decay: float
    budget: Budget
    key: str = field(init=False)

    def __post_init__(self):  # the settings fraction only selects runs: a run made under another budget counts
        recipe = (self.budget.epochs, self.budget.width, self.budget.batch_size)
        ident = json.dumps([self.spec_hash, asdict(self.setting), self.lr, self.weight_decay, recipe], sort_keys=True)
        self.key = hashlib.sha256(ident.encode()).hexdigest()[:16]

    @property
    def protocol_run(self) -> bool:
        """Whether this run is one of the protocol's (its task's score may still lack some of them)."""
        b = self.budget
        return ((b.epochs, b.width, b.batch_size) == (EPOCHS, WIDTH, BATCH_SIZE) and self.lr in LEARNING_RATES
                and self.weight_decay in WEIGHT_DECAYS and self.setting in task_settings(self.setting.task))


def spec_identity(spec) -> tuple[str, str]:
    """(name, content hash) of a spec; the hash changes when the spec's content does."""
    source = adapt_spec(spec, 2, None, False)
    return source.data.get("name", str(spec)), hashlib.sha256(
        json.dumps(source.data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def plan_runs(specs: list, tasks: list[str], budget: Budget) -> list[Run]:
    """Runs in the order they are made: every task's first setting (its baseline), then every task's second, and
    so on; within a setting each spec, learning rate and weight decay. A sweep cut short thus holds whole
    settings of every task, the baselines first."""
    idents = [spec_identity(s) for s in specs]
    settings = {task: budget.task_settings(task) for task in tasks}
    return [Run(spec, name, digest, settings[task][rank], lr, wd, budget)
            for rank in range(max(map(len, settings.values()), default=0))
            for task in tasks if rank < len(settings[task])
            for spec, (name, digest) in zip(specs, idents)
            for lr in budget.learning_rates for wd in budget.weight_decays]


def read_runs(out: Path) -> list[dict]:
    """The finished runs recorded in ``out``; a line cut short by a crash is ignored."""
    path = Path(out) / RUNS_FILE
    if not path.exists():
        return []
    runs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return runs


def append_run(out: Path, record: dict) -> None:
    """Append one run's line: under an exclusive lock, after a newline if a crash left a line unfinished."""
    out.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record) + "\n").encode()
    with open(out / f".{RUNS_FILE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = os.open(out / RUNS_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


class _OutOfTime(Exception):
    """The sweep's time limit passed while a run trained."""


def _recorded(out: Path, key: str) -> bool:
    """Whether run ``key`` has its line in ``out`` (read again: another process may have just written it)."""
    path = out / RUNS_FILE
    if not path.exists():
        return False
    for line in path.read_text(encoding="utf-8").splitlines():
        if key in line:
            try:
                if json.loads(line).get("key") == key:
                    return True
            except json.JSONDecodeError:
                continue
    return False


def make_run(run: Run, train, test, deadline: float | None) -> dict:
    """Train ``run`` and return its record; raises ``_OutOfTime`` once ``deadline`` (``time.time()``) passes."""
    def on_epoch(*_):
        if deadline is not None and time.time() > deadline:
            raise _OutOfTime
    b = run.budget
    outcome = train_run(run.spec, train, test, vocab_size=run.setting.vocab_size,
                        autoencoder=TASKS[run.setting.task].autoencoder, lr=run.lr, weight_decay=run.weight_decay,
                        epochs=b.epochs, width=b.width, batch_size=b.batch_size, on_epoch=on_epoch)
    return {"key": run.key, "spec": run.spec_name, "spec_hash": run.spec_hash, "task": run.setting.task,
            "setting": run.setting.label(), "setting_dir": run.setting.dir_name(), "lr": run.lr,
            "weight_decay": run.weight_decay, "protocol_run": run.protocol_run, "budget": asdict(b),
            **asdict(outcome)}


def work(runs: list[Run], out: Path, data_dir: Path | None, deadline: float | None, *,
         emit: Callable[[str], None], worker: int | None = None) -> None:
    """Make the runs of ``runs`` that no one has recorded or is making, in order: each claimed first (one process
    per run), recorded at once when it finishes. Stops when none is left or at ``deadline``; a run still training
    then is dropped unrecorded (its claim freed, so a later sweep makes it)."""
    out = Path(out)
    done = {r["key"] for r in read_runs(out)}
    data: dict = {}
    tag = "" if worker is None else f"w{worker} "
    for number, run in enumerate(runs, 1):
        if run.key in done:
            continue
        if deadline is not None and time.time() > deadline:
            return
        claim = try_claim(out, run.key)
        if claim is None:  # another process is making it
            continue
        with claim:
            if _recorded(out, run.key):
                done.add(run.key)
                continue
            if run.setting not in data:  # the last few settings kept: workers interleave settings near the end
                data[run.setting] = setting_data(run.setting, data_dir)
                while len(data) > DATA_KEPT:
                    data.pop(next(iter(data)))
            try:
                record = make_run(run, *data[run.setting], deadline)
            except _OutOfTime:
                return
            append_run(out, record)
        done.add(run.key)
        emit(f"{tag}[{number}/{len(runs)}] {run.spec_name} {run.setting.task} {run.setting.label()} "
             f"lr={run.lr:g} wd={run.weight_decay:g}: accuracy {record['test_accuracy']:.3f} "
             f"(tokens {record['token_accuracy']:.3f}), {record['epochs']} epochs, {record['seconds']:.0f}s")


def run_sweep(specs: list, tasks: list[str], budget: Budget, out: Path, *, data_dir: Path | None = None,
              progress: Callable[[str], None] = print, workers: int = 1,
              time_limit: float | None = None) -> list[dict]:
    """Make every run not yet recorded in ``out`` with ``workers`` processes (1: this one), stopping after
    ``time_limit`` seconds; returns all recorded runs of this sweep."""
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    out = Path(out)
    runs = plan_runs(specs, tasks, budget)
    done = {r["key"] for r in read_runs(out)}
    todo = sum(r.key not in done for r in runs)
    progress(f"{len(runs)} runs ({len(runs) - todo} already done in {out / RUNS_FILE}); {budget.label()}"
             + (f"; {workers} workers" if workers > 1 else ""))
    out.mkdir(parents=True, exist_ok=True)
    deadline = None if time_limit is None else time.time() + time_limit
    if workers == 1:
        work(runs, out, data_dir, deadline, emit=progress)
    else:
        run_processes(work, (runs, out, data_dir, deadline), min(workers, max(todo, 1)), progress)
    keys = {r.key for r in runs}
    recorded = [r for r in read_runs(out) if r["key"] in keys]
    if len({r["key"] for r in recorded}) < len(runs) and deadline is not None and time.time() > deadline:
        progress(f"time limit ({time_limit:g}s) reached: {len(recorded)} of {len(runs)} runs recorded; the same "
                 f"command makes the rest")
    return recorded
