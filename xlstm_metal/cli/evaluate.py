"""``xlstm-metal evaluate``: a checkpoint's loss on text files (e.g. the files ``train`` held out)."""
from __future__ import annotations

from .registry import command
from .train import HELD_OUT, data_cleaning_args
from .values import POSITIVE


def _args(p):
    p.add_argument("--model", nargs="+", help="checkpoint directories or Hub repo ids, each measured on the same "
                                              "text; default: the shipped small model")
    p.add_argument("--data", nargs="+", required=True, help="text files, directories or globs, read as train reads "
                                                             "them")
    p.add_argument("--held-out", action="store_true",
                   help=f"only the files train holds out of this --data ({HELD_OUT:.0%}, chosen by their text)")
    data_cleaning_args(p)
    p.add_argument("--seq-len", type=POSITIVE, default=256, help="tokens per window (each from a fresh state)")
    p.add_argument("--batch-size", type=POSITIVE, default=16, help="windows per forward pass")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")


@command("evaluate", "a checkpoint's loss on text files: nats per token and bits per character", _args)
def cmd_evaluate(args) -> int:
    import json

    import numpy as np

    from ..errors import InputError
    from ..runner import xLSTMRunner
    from ..train import encode_texts
    from ..train.evaluate import stream_loss
    from .generate import DEFAULT_MODEL
    from .train import read_data

    records, held, _ = read_data(args)
    if args.held_out and not held:
        raise InputError(f"--held-out: --data holds too few texts for train to hold any out by their text (it "
                         f"holds out its last {HELD_OUT:.0%} of tokens); evaluate on chosen files instead")
    texts = [r.text for r in (held if args.held_out else records + held) if r.text is not None]
    if not texts:
        raise InputError("--data: no plain text to evaluate on (conversations are left out)")
    for model in args.model or [str(DEFAULT_MODEL)]:
        runner = xLSTMRunner.from_pretrained(model)
        if runner.tokenizer is None:
            raise InputError(f"{model} has no tokenizer.json: evaluate reads text")
        tok = runner.tokenizer
        eos = min(tok.eos_token_ids) if tok.eos_token_ids else None
        if eos is None:  # a tokenizer without an end-of-text token: the texts back to back
            ids = np.asarray([i for enc in tok.tokenizer.encode_batch(texts) for i in enc.ids], dtype=np.int32)
        else:
            ids = encode_texts(tok.tokenizer, texts, eos)
        if len(ids) < 2:
            raise InputError(f"--data: the text is {len(ids)} token(s); the loss needs at least 2")
        result = stream_loss(runner, ids, sum(map(len, texts)), args.seq_len, args.batch_size)
        report = {"model": model, "files": len(texts), "held_out": args.held_out, "seq_len": args.seq_len,
                  **result.as_dict()}
        if args.json:
            print(json.dumps(report), flush=True)
        else:
            print(f"{model}: loss {result.loss:.4f} nats/token, {result.bits_per_character:.4f} bits/character on "
                  f"{len(texts)} {'held-out ' if args.held_out else ''}file(s) ({result.characters:,} characters, "
                  f"{result.tokens:,} tokens, windows of {args.seq_len})", flush=True)
    return 0
