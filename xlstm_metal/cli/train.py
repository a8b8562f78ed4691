"""``xlstm-metal train``: next-token training of a spec on text files."""
from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from .registry import command

TRAIN_OPTIONS = "steps batch_size seq_len lr warmup weight_decay grad_clip seed eval_every save_every".split()
MAD_OPTIONS = "steps batch_size lr seq_len n_train seed".split()


def _field_options(p, cls, names: list[str], **helps: str) -> None:
    """One ``--name`` option per named field of dataclass ``cls``, with its type and default."""
    for f in fields(cls):
        if f.name in names:
            p.add_argument("--" + f.name.replace("_", "-"), type=float if f.type == "float" else int, default=f.default,
                           help=helps.get(f.name))


def _args(p):
    from ..train import TrainConfig

    p.add_argument("spec", help="spec file or shipped spec name (its lm_head size must fit the tokenizer)")
    p.add_argument("--data", nargs="+", required=True, help="text files, directories or globs (e.g. /usr/lib/python3)")
    p.add_argument("--out", required=True, help="output: a checkpoint from_pretrained loads (resumed if present)")
    p.add_argument("--tokenizer", help="tokenizer.json to use; default: train a byte-level BPE of the lm_head size")
    p.add_argument("--max-bytes", type=int, default=50_000_000, help="read at most this much text")
    _field_options(p, TrainConfig, TRAIN_OPTIONS, batch_size="sequences per step per rank (under mlx.launch: x ranks)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if --out holds a checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it holds other files or a run of another spec (default: refuse)")


@command("train", "train a spec on text files (AdamW, warmup + cosine, resumable checkpoints)", _args)
def cmd_train(args) -> int:
    import json

    import numpy as np

    from ..distributed import world
    from ..runner import xLSTMRunner
    from ..train import TokenBatches, TrainConfig, Trainer, encode_texts, expand_files, read_texts, train_bpe_tokenizer
    from ..train.data import EOS
    from ..train.loop import resumable_run

    out = Path(args.out)
    runner = xLSTMRunner.from_spec(args.spec, dtype=args.dtype, seed=args.seed)
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    resumable_run(out, runner.graph, args.overwrite, writer=world().rank() == 0)  # a wrong --out: before any data
    files = expand_files(args.data)
    texts = read_texts(files, args.max_bytes)
    print(f"{len(texts)} files, {sum(map(len, texts)) / 1e6:.1f} M characters", file=sys.stderr)
    tok_dir = out.parent / f".{out.name}.tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    resuming = not args.overwrite and (out / "tokenizer.json").exists()
    if args.tokenizer or resuming:  # given, or resuming: keep the run's tokenizer
        from ..generation.tokenizer import read_tokenizer

        tok = read_tokenizer(args.tokenizer or out / "tokenizer.json")
    else:
        tok = train_bpe_tokenizer(texts, vocab)
    if tok.get_vocab_size() > vocab:
        raise ValueError(f"the tokenizer has {tok.get_vocab_size()} tokens but the spec's lm_head has {vocab}")
    tok.save(str(tok_dir / "tokenizer.json"))
    eos = EOS if tok.token_to_id(EOS) is not None else None
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({"eos_token": eos, "add_bos_token": False}))
    eos_id = tok.token_to_id(eos) if eos else 0
    ids = encode_texts(tok, texts, eos_id)
    split = int(len(ids) * 0.98)
    print(f"{len(ids) / 1e6:.2f} M tokens ({len(ids) - split} held out); "
          f"{runner.num_parameters() / 1e6:.2f} M parameters", file=sys.stderr)
    cfg = TrainConfig(**{n: getattr(args, n) for n in TRAIN_OPTIONS})
    config = {"model_type": "xlstm_metal", "name": runner.graph.name, "eos_token_id": eos_id, "vocab_size": vocab}
    ranks = world().size()
    trainer = Trainer(runner, TokenBatches(ids[:split], args.batch_size * ranks, args.seq_len, args.seed), cfg, out,
                      val_batches=TokenBatches(ids[split:], args.batch_size, args.seq_len, args.seed + 1),
                      tokenizer_dir=tok_dir, config=config, overwrite=args.overwrite)
    log = trainer.train(resume=not args.no_resume)
    val = f", validation loss {log.val[-1][1]:.3f}" if log.val else ""
    print(f"done: step {trainer.step}, loss {np.mean(log.losses[-10:]):.3f}{val}; checkpoint in {out}", file=sys.stderr)
    return 0


def _mad_args(p):
    from ..mad import MadBudget
    from ..mad.tasks import TASKS

    p.add_argument("specs", nargs="+", help="spec files or shipped spec names to compare")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of: {', '.join(TASKS)}")
    _field_options(p, MadBudget, MAD_OPTIONS, seq_len="override every task's sequence length (smaller = faster)")
    p.add_argument("--out", default="mad_results", help="directory for mad.json, mad.txt and mad.svg")


@command("mad", "rank architectures on the MAD synthetic tasks under one training budget", _mad_args)
def cmd_mad(args) -> int:
    from ..mad import MadBudget, run_mad, save, table
    from ..mad.tasks import TASKS

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown MAD task(s) {unknown}; choose from {', '.join(TASKS)}")
    budget = MadBudget(**{n: getattr(args, n) for n in MAD_OPTIONS})
    results = run_mad(args.specs, tasks, budget, progress=lambda r: print(
        f"{r.spec:28s} {r.task:20s} accuracy {r.accuracy:.3f}  loss {r.final_loss:.3f}  {r.seconds:.0f}s",
        file=sys.stderr))
    save(results, Path(args.out))
    print(table(results))
    print(f"\nwrote {args.out}/mad.json, mad.txt, mad.svg", file=sys.stderr)
    return 0
