"""``xlstm-metal train``: next-token training of a spec from scratch, or fine-tuning of a checkpoint (all its weights,
or LoRA adapters), on text files and JSONL records."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from .registry import command
from .values import POSITIVE, SEED, integer, number

TRAIN_OPTIONS = ("steps batch_size seq_len warmup weight_decay grad_clip seed eval_every save_every log_every "
                 "checkpoint_blocks loss_chunk").split()
FINE_TUNE_LR = 1e-4  # the default peak learning rate when a checkpoint is fine-tuned (fully or with LoRA)
HELD_OUT = 0.02  # share of the records kept out of training for the validation loss (``evaluate --held-out``)


def data_cleaning_args(p):
    """The options that choose the text from ``--data`` (shared with ``evaluate``, so both see the same files)."""
    p.add_argument("--max-bytes", type=integer(1, 2 ** 50), default=50_000_000, help="read at most this much text")
    p.add_argument("--exclude", nargs="+", action="extend", default=[], metavar="GLOB",
                   help="leave out files whose path matches (e.g. '*/tests/*' '*_pb2.py')")
    p.add_argument("--keep-generated", action="store_true",
                   help="keep generated tables and data blobs (left out by default: texts of literal-only lines, "
                        "very long lines, few names); duplicate texts are always dropped")


def _defaults(cls) -> dict:
    from dataclasses import fields

    return {f.name: f.default for f in fields(cls)}


def _layers(text: str) -> int:
    import argparse

    if text in ("all", "-1"):
        return -1
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a block count >= 1, or -1 / all, got {text!r}")
    return value


def _args(p):
    from ..train.config import TrainConfig

    d = _defaults(TrainConfig)
    p.add_argument("spec", nargs="?", help="spec file or shipped spec name to train from scratch (its lm_head size "
                                           "must fit the tokenizer); or --from")
    p.add_argument("--from", dest="base", metavar="CHECKPOINT",
                   help="fine-tune this checkpoint (a directory from_pretrained loads, or a Hub repo id): its spec, "
                        "weights and tokenizer; e.g. xlstm_metal/default_model")
    p.add_argument("--data", nargs="+", required=True,
                   help="text files, directories or globs; .jsonl files hold {\"text\": ...}, {\"messages\": "
                        "[...]} or {\"prompt\", \"completion\"} lines (chats: loss on the assistant turns only); a "
                        "valid.jsonl is the held-out set")
    p.add_argument("--out", required=True, help="output: a checkpoint from_pretrained loads, or with --lora-rank the "
                                                "adapters (resumed if present)")
    p.add_argument("--tokenizer", help="tokenizer.json to use; default: the checkpoint's (--from), else train a "
                                       "byte-level BPE of the lm_head size")
    data_cleaning_args(p)
    p.add_argument("--steps", type=POSITIVE, default=d["steps"], help="optimizer steps in all (a resumed run counts "
                                                                      "the steps it has done)")
    p.add_argument("--batch-size", type=POSITIVE, default=d["batch_size"],
                   help="sequences per step per rank (under mlx.launch: x ranks)")
    p.add_argument("--seq-len", type=POSITIVE, default=d["seq_len"], help="tokens per training sequence")
    p.add_argument("--lr", type=number(0, above=True), default=None,
                   help=f"peak learning rate, AdamW (default: {d['lr']:g}; with --from: {FINE_TUNE_LR:g})")
    p.add_argument("--warmup", type=integer(0), default=None,
                   help="steps of linear warmup to --lr (default: a tenth of --steps, at most 1000)")
    p.add_argument("--weight-decay", type=number(0), default=d["weight_decay"], help="AdamW weight decay")
    p.add_argument("--grad-clip", type=number(0), default=d["grad_clip"], help="clip the gradient norm (0: off)")
    p.add_argument("--seed", type=SEED, default=d["seed"], help="seed of the weights and of the batch order")
    p.add_argument("--eval-every", type=POSITIVE, default=d["eval_every"], help="validation loss every N steps")
    p.add_argument("--save-every", type=POSITIVE, default=d["save_every"], help="write the checkpoint every N steps")
    p.add_argument("--log-every", type=POSITIVE, default=d["log_every"], help="a progress line every N steps")
    p.add_argument("--dtype", choices=["float32", "bfloat16"],
                   help="weight and compute dtype (default: float32; with --from the checkpoint's)")
    p.add_argument("--checkpoint-blocks", action="store_true", help="recompute each block in the backward pass: "
                   "less memory for about a third more compute")
    p.add_argument("--loss-chunk", type=integer(0, 2 ** 40), default=d["loss_chunk"], metavar="TOKENS",
                   help="run the output head and loss this many tokens at a time, recomputed in the backward pass "
                        "(default: chunks of ~256 MB of logits once a step's logits pass 1 GiB; 0: never)")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if --out holds a checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it holds other files or a run of another spec (default: refuse)")
    lora = p.add_argument_group("LoRA (with --from: train low-rank adapters, the base frozen; quantized bases too)")
    lora.add_argument("--lora-rank", type=POSITIVE, help="adapter rank; turns LoRA on")
    scale = lora.add_mutually_exclusive_group()
    scale.add_argument("--lora-scale", type=number(0, above=True), help="the update is scale * x A B (default 20)")
    scale.add_argument("--lora-alpha", type=number(0, above=True), help="instead of --lora-scale: scale = alpha / rank")
    lora.add_argument("--lora-dropout", type=number(0, high=0.99), default=0.0, help="dropout on the adapters' input")
    lora.add_argument("--lora-layers", type=_layers, help="adapt the last N blocks (-1 or all: every block; "
                                                         "default: the last 16, or all of a smaller model)")
    lora.add_argument("--lora-targets", help="comma-separated projections to adapt, as the blocks name them (e.g. "
                                             "proj_in or its pieces q,k,v; out_proj; proj_up_gate_z, proj_down); "
                                             "default: every projection")


def _lora(args):
    from ..train.lora import LoRAConfig

    given = [f"--lora-{n.replace('_', '-')}" for n in ("scale", "alpha", "targets") if getattr(args, f"lora_{n}")]
    if args.lora_rank is None:
        if given or args.lora_dropout:
            raise InputError(f"{(given or ['--lora-dropout'])[0]} needs --lora-rank (which turns LoRA on)")
        return None
    if args.base is None:
        raise InputError("--lora-rank needs --from CHECKPOINT: adapters train on a trained base model")
    if args.lora_dropout and args.checkpoint_blocks:  # the backward's recomputation would draw other masks
        raise InputError("--checkpoint-blocks recomputes each block in the backward pass with new dropout masks; "
                         "pass --lora-dropout 0 or leave out --checkpoint-blocks")
    scale = args.lora_alpha / args.lora_rank if args.lora_alpha else args.lora_scale or 20.0
    keys = [k.strip() for k in args.lora_targets.split(",") if k.strip()] if args.lora_targets else None
    return LoRAConfig(rank=args.lora_rank, scale=scale, dropout=args.lora_dropout, num_layers=args.lora_layers or 16,
                      keys=keys)


@command("train", "train a spec from scratch, or fine-tune a checkpoint (--from; LoRA with --lora-rank), on text "
                  "files or JSONL (AdamW, warmup + cosine, resumable)", _args)
def cmd_train(args) -> int:
    import numpy as np

    from ..distributed import world
    from ..train import TokenBatches, TrainConfig, Trainer
    from ..train.loop import resumable_run

    if (args.spec is None) == (args.base is None):
        raise InputError("give a SPEC to train from scratch or --from CHECKPOINT to fine-tune one, not "
                         + ("both" if args.spec else "neither"))
    lr = args.lr or (FINE_TUNE_LR if args.base else _defaults(TrainConfig)["lr"])
    cfg = TrainConfig(lr=lr, **{n: getattr(args, n) for n in TRAIN_OPTIONS})  # checked before anything is built
    lora = _lora(args)
    out = Path(args.out)
    runner, base_dir = _model(args, lora)
    lora_run = base_name = None
    if lora is not None:  # options that do not fit the model: before any data is read
        from ..train.adapters import adapter_config
        from ..train.lora import lora_layers, plan_lora

        if args.lora_layers is None:
            lora.num_layers = min(lora.num_layers, len(lora_layers(runner.graph)))
        plan_lora(runner.graph, lora)
        local = Path(args.base).expanduser()
        base_name = str(local.resolve()) if local.exists() else args.base  # a directory, or a Hub repo id
        lora_run = adapter_config(lora, base_name)
    resumable_run(out, runner.graph, args.overwrite, writer=world().rank() == 0, lora=lora_run)  # before any data
    train, val, tok_dir, config = _data(args, runner, out, base_dir)
    ranks = world().size()
    trainer = Trainer(runner, TokenBatches(train[0], args.batch_size * ranks, args.seq_len, args.seed, train[1]),
                      cfg, out, val_batches=TokenBatches(val[0], args.batch_size, args.seq_len, args.seed + 1, val[1])
                      if len(val[0]) else None,
                      tokenizer_dir=tok_dir, config=config, overwrite=args.overwrite, lora=lora,
                      base=base_name if lora else None)
    if lora is not None:
        from ..train.adapters import adapter_weights

        count = sum(a.size for a in adapter_weights(runner.model).values())
        print(f"LoRA: {count:,} trainable parameters (rank {lora.rank}, scale {lora.scale:g}) on "
              f"{runner.num_parameters():,} frozen{' quantized' if runner.quantization else ''}", file=sys.stderr)
    log = trainer.train(resume=not args.no_resume)
    if not trainer.steps_run:  # resumed at (or past) --steps: nothing to do
        print(f"nothing to train: {out} is already at step {trainer.step} (--steps {cfg.steps}); raise --steps to "
              f"continue", file=sys.stderr)
        return 0
    val_text = f", validation loss {log.val[-1][1]:.3f}" if log.val else ""
    done = f"done: step {trainer.step}, loss {np.mean(log.losses[-10:]):.3f}{val_text}; "
    if lora is not None:
        print(f"{done}wrote {out / 'adapters.safetensors'} ({count:,} parameters) and adapter_config.json; generate "
              f"with `xlstm-metal generate --model {args.base} --adapters {out}`, merge with `xlstm-metal convert "
              f"{args.base} FUSED_DIR --fuse-adapters {out}`", file=sys.stderr)
    else:
        size = sum(f.stat().st_size for f in out.glob("*.safetensors") if f.name != "trainer_state.safetensors")
        print(f"{done}wrote {out}: weights ({size / 1e6:.1f} MB), config.json, tokenizer and trainer state; load it "
              f"with from_pretrained('{out}') or `xlstm-metal generate --model {out}`", file=sys.stderr)
    return 0


def _model(args, lora):
    """The runner to train and the checkpoint directory it came from (None: a spec with fresh weights)."""
    from ..runner import xLSTMRunner

    if args.base is None:
        return xLSTMRunner.from_spec(args.spec, dtype=args.dtype or "float32", seed=args.seed), None
    from ..checkpoint import open_checkpoint

    runner = xLSTMRunner.from_pretrained(args.base, dtype=args.dtype, progress=False)
    if runner.quantization and lora is None:
        q = runner.quantization
        raise InputError(f"{args.base} is quantized ({q['bits']}-bit): its weights cannot be trained directly; train "
                         f"LoRA adapters on it (--lora-rank 8), or first `xlstm-metal convert {args.base} DIR "
                         f"--dequantize` and train DIR")
    return runner, open_checkpoint(args.base).directory


def _data(args, runner, out: Path, base_dir):
    """((train ids, mask), (held-out ids, mask), the tokenizer files' directory, config.json) for the run."""
    import json

    import numpy as np

    from ..generation.chat import ChatFormat
    from ..train import train_bpe_tokenizer
    from ..train.data import EOS
    from ..train.records import encode_records, record_texts

    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    readable = min(vocab, runner.vocab_size or vocab)  # ids both the embedding and the lm_head know
    records, val_records, by_text = read_data(args)
    wrapper, tok_dir = _tokenizer(args, runner, out, base_dir)
    chat = ChatFormat(wrapper.chat_template if wrapper else None, where=getattr(wrapper, "chat_template_file", ""),
                      special_tokens=wrapper.special_tokens() if wrapper else None)
    if wrapper is None:  # a spec from scratch without --tokenizer: train one on the data
        tok = train_bpe_tokenizer(record_texts(chat, records), readable)
        tok.save(str(tok_dir / "tokenizer.json"))
        (tok_dir / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS, "add_bos_token": False}))
    else:
        tok = wrapper.tokenizer
    if tok.get_vocab_size() > readable:
        raise InputError(f"{args.tokenizer or tok_dir}: the tokenizer has {tok.get_vocab_size()} tokens but the "
                         f"{'model' if base_dir else 'spec'} '{runner.graph.name}' reads {readable}; use a spec with "
                         f"a larger vocabulary or a smaller tokenizer")
    eos_ids = sorted(runner.eos_token_ids | set(getattr(wrapper, "eos_token_ids", ()) or ()))
    eos_id = eos_ids[0] if eos_ids else (tok.token_to_id(EOS) if tok.token_to_id(EOS) is not None else 0)
    ids, mask = encode_records(tok, chat, records, eos_id)
    val = encode_records(tok, chat, val_records, eos_id) if val_records else None
    if by_text and len(val[0]) < args.seq_len + 2:  # held-out files too short for a window: the tail instead
        ids, mask = np.concatenate([ids, val[0]]), np.concatenate([mask, val[1]])
        val = None
    if val is not None:  # valid.jsonl, or whole files chosen by their text
        train = (ids, mask)
    else:  # too few files: the last 2% of the tokens, at least one window of it where the data allows
        split = min(int(len(ids) * 0.98), len(ids) - args.seq_len - 2)
        split = split if split >= args.seq_len + 2 else len(ids)
        train, val = (ids[:split], mask[:split]), (ids[split:], mask[split:])
    counted = f", {int(train[1].sum()) / 1e6:.2f} M carry loss" if not train[1].all() else ""
    held_out = f"{len(val[0])} held out" if len(val[0]) else "too few to hold any out for validation"
    print(f"{len(records)} records, {len(train[0]) / 1e6:.2f} M tokens{counted} ({held_out}); "
          f"{runner.num_parameters() / 1e6:.2f} M parameters", file=sys.stderr)
    if base_dir is not None:
        config = runner.config
    else:
        config = {"model_type": "xlstm_metal", "name": runner.graph.name, "eos_token_id": eos_id, "vocab_size": vocab}
    return train, val, tok_dir, config


def read_data(args) -> tuple[list, list, bool]:
    """(training records, held-out records, whether those were chosen by their text) of ``--data``: ``--exclude``
    matches and unreadable files left out, generated tables and copies dropped (the user is told how many, with an
    example), then valid.jsonl or ``HELD_OUT`` of the records, chosen by their text, held out (none: too few
    records to choose from; train then holds out the tail of the tokens)."""
    from ..train import expand_files
    from ..train.records import read_records
    from ..train.sources import clean_records, excluded, split_records

    files = expand_files(args.data)
    chosen = [f for f in files if not excluded(f, args.exclude)]
    held = [f for f in chosen if f.name in ("valid.jsonl", "test.jsonl")]  # mlx-lm's data directory layout
    skipped: list = []
    records = read_records([f for f in chosen if f not in held], args.max_bytes, skipped)
    val_records = read_records([f for f in held if f.name == "valid.jsonl"])
    if skipped:  # binary or unreadable files are left out, and the user is told which
        path, why = skipped[0]
        more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
        print(f"skipped {len(skipped)} file(s) that are not readable text: {path} ({why}){more}", file=sys.stderr)
    if not records and len(skipped) == len(chosen):
        raise InputError(f"--data: none of the {len(files)} file(s) holds readable UTF-8 text")
    records, src = clean_records(records, args.keep_generated)
    src.excluded = len(files) - len(chosen)
    print(src.summary(), file=sys.stderr)
    if not records:
        raise InputError(f"--data: every file was left out ({src.summary()}); --keep-generated keeps tables and "
                         f"blobs")
    split = None if val_records else split_records(records, HELD_OUT)
    return (*split, True) if split else (records, val_records, False)


def _tokenizer(args, runner, out: Path, base_dir):
    """(the tokenizer, with its chat template, or None: train one; the directory its files are copied from)."""
    from ..generation.tokenizer import TokenizerWrapper, read_tokenizer

    if args.tokenizer:  # a tokenizer.json, with the files beside it (special tokens, chat template) when present
        path = Path(args.tokenizer)
        if path.name == "tokenizer.json" and path.is_file():
            return TokenizerWrapper.from_dir(path.parent), path.parent
        return TokenizerWrapper(read_tokenizer(path)), _run_tokenizer_dir(out, path)
    if base_dir is not None:
        if runner.tokenizer is None:
            raise InputError(f"{base_dir} has no tokenizer.json; pass --tokenizer FILE")
        return runner.tokenizer, base_dir
    if not args.overwrite and (out / "tokenizer.json").exists():  # resuming: keep the run's tokenizer
        return TokenizerWrapper.from_dir(out), _run_tokenizer_dir(out, out / "tokenizer.json")
    return None, _run_tokenizer_dir(out)


def _run_tokenizer_dir(out: Path, tokenizer_file: Path | None = None) -> Path:
    """A directory next to ``out`` holding the run's tokenizer files (copied into each checkpoint)."""
    import json
    import shutil

    from ..train.data import EOS

    tok_dir = out.parent / f".{out.name}.tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    if tokenizer_file is not None:
        if Path(tokenizer_file).resolve() != (tok_dir / "tokenizer.json").resolve():
            shutil.copyfile(tokenizer_file, tok_dir / "tokenizer.json")
        from ..generation.tokenizer import read_tokenizer

        tok = read_tokenizer(tok_dir / "tokenizer.json")
        eos = EOS if tok.token_to_id(EOS) is not None else None
        (tok_dir / "tokenizer_config.json").write_text(json.dumps({"eos_token": eos, "add_bos_token": False}))
    return tok_dir
