"""``xlstm-metal mad``: the MAD protocol (Poli et al. 2024) for YAML specs, or a reduced budget of it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from .registry import command
from .values import POSITIVE, number

HELP = "score specs on the MAD protocol's six synthetic tasks (resumable; --budget for a reduced run)"

EPILOG = """\
The protocol (mad-lab's): per task a baseline setting plus its difficulty changes (66 settings), 1,280 test
examples each, model width 128; every setting trained with AdamW over lr {1e-4, 5e-4, 1e-3} x weight decay
{0, 0.1} (cosine schedule per epoch, batch 128, up to 200 epochs, stopped at test accuracy 0.999); the best run
of each setting kept; a task's MAD score is the mean over its settings. Compression trains the spec as the
encoder of an auto-encoder. That is 396 runs per spec: run it on a GPU. Generated data equals mad-lab's for
its seed (selective copying places its blanks with the same seeded generator; mad-lab used numpy's global one);
training runs in float32 (mad-lab: bf16 mixed precision).

  full protocol, resumable (rerun the same command after an interruption; finished runs are skipped):
    xlstm-metal mad xlstm_mad attention_baseline --out mad_results
  on the published data (https://zenodo.org/records/10843663, unpacked so DIR holds the t-* directories):
    xlstm-metal mad xlstm_mad --data DIR --out mad_results
  write the generated data in mad-lab's layout (DIR/<setting>/{train,test}/{inputs,targets}.npy):
    xlstm-metal mad --data DIR --data-only
  a reduced budget (10% of the epochs and settings; labelled NOT comparable with published scores):
    xlstm-metal mad xlstm_mad --budget 0.1 --lr 1e-3 --wd 0 --out mad_quick
  8 processes side by side on one GPU, stopping after an hour (rerun to continue):
    xlstm-metal mad xlstm_mad attention_baseline --workers 8 --time-limit 3600 --out mad_results

Outputs in --out: runs.jsonl (one line per finished run), mad.json, mad.txt (table), mad.md (markdown table
of the settings every spec finished), mad.png (chart, with matplotlib). Sweeps sharing one --out (--workers,
or commands started side by side) make each run once. Progress goes to stderr, one line per run.
"""


def _args(p):
    from ..mad import TASKS

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("specs", nargs="*", help="spec files or shipped spec names to score")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of: {', '.join(TASKS)}")
    p.add_argument("--out", default="mad_results", help="directory for runs.jsonl, mad.json, mad.txt, mad.md, mad.png")
    p.add_argument("--data", type=Path, help="mad-lab benchmark data directory: settings found there are read, "
                                             "missing ones generated and written there")
    p.add_argument("--data-only", action="store_true", help="only read/write the data of every setting, no training")
    p.add_argument("--budget", type=number(0, above=True, high=1), default=1.0,
                   help="fraction of the protocol's epochs and of each task's settings (default 1: the protocol)")
    p.add_argument("--epochs", type=POSITIVE, help="epochs per run (overrides --budget's)")
    p.add_argument("--settings", type=number(0, above=True, high=1), help="fraction of each task's settings, spread from the baseline")
    p.add_argument("--examples", type=number(0, above=True, high=1), help="fraction of each setting's training and test examples")
    p.add_argument("--lr", type=number(0, above=True), nargs="+", help="learning rates to sweep (default 1e-4 5e-4 1e-3)")
    p.add_argument("--wd", type=number(0), nargs="+", help="weight decays to sweep (default 0 0.1)")
    p.add_argument("--width", type=POSITIVE, help="model width: the embedding dimension (default 128)")
    p.add_argument("--batch-size", type=POSITIVE, help="training batch size (default 128)")
    p.add_argument("--workers", type=POSITIVE, default=1,
                   help="processes training runs side by side (default 1); small models leave a GPU mostly idle")
    p.add_argument("--time-limit", type=number(0, above=True), metavar="SECONDS",
                   help="start no run after this long, and drop a run still training then (the same command "
                        "makes it later); the report covers what finished")


def budget_from(args):
    from ..mad import Budget

    overrides = {k: v for k, v in {"epochs": args.epochs, "settings": args.settings, "examples": args.examples,
                                   "learning_rates": tuple(args.lr) if args.lr else None,
                                   "weight_decays": tuple(args.wd) if args.wd else None, "width": args.width,
                                   "batch_size": args.batch_size}.items() if v is not None}
    return Budget.scaled(args.budget, **overrides)


@command("mad", HELP, _args)
def cmd_mad(args) -> int:
    from ..mad import TASKS, read_runs, run_sweep, setting_data, write_report

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise InputError(f"--tasks: unknown MAD task(s) {unknown}; choose from {', '.join(TASKS)}")
    budget = budget_from(args)
    if args.data_only:
        if args.data is None:
            raise InputError("--data-only needs --data DIR")
        for task in tasks:
            for setting in budget.task_settings(task):
                train, test = setting_data(setting, args.data)
                print(f"{args.data / setting.dir_name()}: train {train.inputs.shape}, test {test.inputs.shape}",
                      file=sys.stderr)
        return 0
    if not args.specs:
        raise InputError("give at least one spec (a file or a shipped spec name such as xlstm_mad)")
    out = Path(args.out)
    try:
        runs = run_sweep(args.specs, tasks, budget, out, data_dir=args.data, workers=args.workers,
                         time_limit=args.time_limit, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {len(read_runs(out))} finished runs are in {out / 'runs.jsonl'}; the same command "
              f"resumes", file=sys.stderr)
        return 130
    if not runs:
        print("no run of this sweep is recorded yet (the time limit passed first, or other processes are making "
              "them): nothing to report; the same command goes on", file=sys.stderr)
        return 0
    for notice in write_report(runs, out):
        print(f"note: {notice}", file=sys.stderr)
    from ..mad import table

    print(table(runs))
    if len(runs) < len(read_runs(out)):
        print(f"(table: this command's runs; {out / 'runs.jsonl'} holds others too)", file=sys.stderr)
    print(f"\nwrote {out}/runs.jsonl, mad.json, mad.txt, mad.md, mad.png", file=sys.stderr)
    return 0
