"""``xlstm-metal train``: next-token training of a spec on text files; ``xlstm-metal mad``: the MAD ranking."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from .registry import command
from .values import POSITIVE, SEED, integer, number

TRAIN_OPTIONS = ("steps batch_size seq_len lr warmup weight_decay grad_clip seed eval_every save_every "
                 "checkpoint_blocks").split()


def _defaults(cls) -> dict:
    from dataclasses import fields

    return {f.name: f.default for f in fields(cls)}


def _args(p):
    from ..train.config import TrainConfig

    d = _defaults(TrainConfig)
    p.add_argument("spec", help="spec file or shipped spec name (its lm_head size must fit the tokenizer)")
    p.add_argument("--data", nargs="+", required=True, help="text files, directories or globs (e.g. /usr/lib/python3)")
    p.add_argument("--out", required=True, help="output: a checkpoint from_pretrained loads (resumed if present)")
    p.add_argument("--tokenizer", help="tokenizer.json to use; default: train a byte-level BPE of the lm_head size")
    p.add_argument("--max-bytes", type=integer(1, 2 ** 50), default=50_000_000, help="read at most this much text")
    p.add_argument("--steps", type=POSITIVE, default=d["steps"], help="optimizer steps in all (a resumed run counts "
                                                                      "the steps it has done)")
    p.add_argument("--batch-size", type=POSITIVE, default=d["batch_size"],
                   help="sequences per step per rank (under mlx.launch: x ranks)")
    p.add_argument("--seq-len", type=POSITIVE, default=d["seq_len"], help="tokens per training sequence")
    p.add_argument("--lr", type=number(0, above=True), default=d["lr"], help="peak learning rate (AdamW)")
    p.add_argument("--warmup", type=integer(0), default=None,
                   help="steps of linear warmup to --lr (default: a tenth of --steps, at most 1000)")
    p.add_argument("--weight-decay", type=number(0), default=d["weight_decay"], help="AdamW weight decay")
    p.add_argument("--grad-clip", type=number(0), default=d["grad_clip"], help="clip the gradient norm (0: off)")
    p.add_argument("--seed", type=SEED, default=d["seed"], help="seed of the weights and of the batch order")
    p.add_argument("--eval-every", type=POSITIVE, default=d["eval_every"], help="validation loss every N steps")
    p.add_argument("--save-every", type=POSITIVE, default=d["save_every"], help="write the checkpoint every N steps")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weight and compute dtype")
    p.add_argument("--checkpoint-blocks", action="store_true", help="recompute each block in the backward pass: "
                   "less memory for about a third more compute")
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

    cfg = TrainConfig(**{n: getattr(args, n) for n in TRAIN_OPTIONS})  # checked before anything is built
    out = Path(args.out)
    runner = xLSTMRunner.from_spec(args.spec, dtype=args.dtype, seed=args.seed)
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    resumable_run(out, runner.graph, args.overwrite, writer=world().rank() == 0)  # a wrong --out: before any data
    readable = min(vocab, runner.vocab_size or vocab)  # ids both the embedding and the lm_head know
    files = expand_files(args.data)
    skipped: list = []
    texts = read_texts(files, args.max_bytes, skipped)
    if skipped:  # binary or unreadable files are left out, and the user is told which
        path, why = skipped[0]
        more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
        print(f"skipped {len(skipped)} file(s) that are not readable text: {path} ({why}){more}", file=sys.stderr)
    if not texts:
        raise InputError(f"--data: none of the {len(files)} file(s) holds readable UTF-8 text")
    print(f"{len(texts)} files, {sum(map(len, texts)) / 1e6:.1f} M characters", file=sys.stderr)
    tok_dir = out.parent / f".{out.name}.tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    resuming = not args.overwrite and (out / "tokenizer.json").exists()
    tok_file = args.tokenizer or (str(out / "tokenizer.json") if resuming else None)
    if tok_file:  # given, or resuming: keep the run's tokenizer
        from ..generation.tokenizer import read_tokenizer

        tok = read_tokenizer(tok_file)
    else:
        tok = train_bpe_tokenizer(texts, readable)
    if tok.get_vocab_size() > readable:
        raise InputError(f"{tok_file}: the tokenizer has {tok.get_vocab_size()} tokens but the spec "
                         f"'{runner.graph.name}' reads {readable}; use a spec with a larger vocabulary or a smaller "
                         f"tokenizer")
    tok.save(str(tok_dir / "tokenizer.json"))
    eos = EOS if tok.token_to_id(EOS) is not None else None
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({"eos_token": eos, "add_bos_token": False}))
    eos_id = tok.token_to_id(eos) if eos else 0
    ids = encode_texts(tok, texts, eos_id)
    split = int(len(ids) * 0.98)
    print(f"{len(ids) / 1e6:.2f} M tokens ({len(ids) - split} held out); "
          f"{runner.num_parameters() / 1e6:.2f} M parameters", file=sys.stderr)
    config = {"model_type": "xlstm_metal", "name": runner.graph.name, "eos_token_id": eos_id, "vocab_size": vocab}
    ranks = world().size()
    trainer = Trainer(runner, TokenBatches(ids[:split], args.batch_size * ranks, args.seq_len, args.seed), cfg, out,
                      val_batches=TokenBatches(ids[split:], args.batch_size, args.seq_len, args.seed + 1),
                      tokenizer_dir=tok_dir, config=config, overwrite=args.overwrite)
    log = trainer.train(resume=not args.no_resume)
    if not trainer.steps_run:  # resumed at (or past) --steps: nothing to do
        print(f"nothing to train: {out} is already at step {trainer.step} (--steps {cfg.steps}); raise --steps to "
              f"continue", file=sys.stderr)
        return 0
    val = f", validation loss {log.val[-1][1]:.3f}" if log.val else ""
    print(f"done: step {trainer.step}, loss {np.mean(log.losses[-10:]):.3f}{val}; checkpoint in {out}", file=sys.stderr)
    return 0
