"""``xlstm-metal train``: next-token training of a spec on text files."""
from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from .registry import command

TRAIN_OPTIONS = "steps batch_size seq_len lr warmup weight_decay grad_clip seed eval_every save_every".split()


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


@command("train", "train a spec on text files (AdamW, warmup + cosine, resumable checkpoints)", _args)
def cmd_train(args) -> int:
    import json

    import numpy as np

    from ..runner import xLSTMRunner
    from ..train import TokenBatches, TrainConfig, Trainer, encode_texts, expand_files, read_texts, train_bpe_tokenizer
    from ..train.data import EOS

    out = Path(args.out)
    runner = xLSTMRunner.from_spec(args.spec, dtype=args.dtype, seed=args.seed)
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    files = expand_files(args.data)
    texts = read_texts(files, args.max_bytes)
    print(f"{len(texts)} files, {sum(map(len, texts)) / 1e6:.1f} M characters", file=sys.stderr)
    tok_dir = out.parent / f".{out.name}.tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    if args.tokenizer or (out / "tokenizer.json").exists():  # given, or resuming: keep the run's tokenizer
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(args.tokenizer or str(out / "tokenizer.json"))
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
    from ..distributed import world

    ranks = world().size()
    trainer = Trainer(runner, TokenBatches(ids[:split], args.batch_size * ranks, args.seq_len, args.seed), cfg, out,
                      val_batches=TokenBatches(ids[split:], args.batch_size, args.seq_len, args.seed + 1),
                      tokenizer_dir=tok_dir, config=config)
    log = trainer.train(resume=not args.no_resume)
    val = f", validation loss {log.val[-1][1]:.3f}" if log.val else ""
    print(f"done: step {trainer.step}, loss {np.mean(log.losses[-10:]):.3f}{val}; checkpoint in {out}", file=sys.stderr)
    return 0
