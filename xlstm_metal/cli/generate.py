"""``xlstm-metal generate`` and ``xlstm-metal chat``."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from .registry import command
from .values import COUNT, SEED, number, token_ids

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "default_model"
DTYPES = ["float32", "bfloat16", "float16"]


def _model_args(p):
    p.add_argument("--model", help="checkpoint directory (Hugging Face layout) or Hub repo id (org/name, from the "
                   "HF cache or downloaded); default: the shipped small model")
    p.add_argument("--spec", help="instead of --model: a spec with random weights (token ids only)")
    p.add_argument("--dtype", choices=DTYPES, help="compute dtype (default: the checkpoint's; float32 for --spec)")
    p.add_argument("--max-tokens", type=COUNT, default=100, help="tokens to generate at most")
    p.add_argument("--temperature", type=number(0), default=0.0, help="sampling temperature (0: greedy)")
    p.add_argument("--top-p", type=number(0, above=True, high=1), default=1.0,
                   help="nucleus sampling: keep the most likely tokens up to this probability mass (1: off)")
    p.add_argument("--top-k", type=COUNT, default=0, help="keep only the k most likely tokens (0: off)")
    p.add_argument("--min-p", type=number(0, high=0.999999), default=0.0,
                   help="drop tokens less likely than this fraction of the most likely one (0: off)")
    p.add_argument("--repetition-penalty", type=number(0, above=True), default=None,
                   help="divide recent tokens' logits by this (default: off)")
    p.add_argument("--seed", type=SEED, default=None, help="sampling seed (and --spec weights seed; default: random)")
    p.add_argument("--stop", action="append", default=[], help="stop at this string (repeatable)")
    p.add_argument("--adapters", metavar="ADAPTER_DIR", help="LoRA adapters (from train --lora-rank) to apply, "
                                                         "unfused, on --model (default: the base they name)")


def load_model(args):
    from ..runner import xLSTMRunner

    if args.spec:
        if args.adapters:
            raise InputError("--adapters needs --model (the base they were trained on), not --spec")
        return xLSTMRunner.from_spec(args.spec, dtype=args.dtype or "float32", seed=args.seed or 0)
    model = args.model
    if args.adapters and not model:  # the base the adapters were trained on, as adapter_config.json names it
        from ..train.adapters import read_adapter_config

        model = read_adapter_config(args.adapters)[1]
    path = Path(model) if model else DEFAULT_MODEL
    if not model and not (path / "config.json").exists():
        raise InputError(f"no --model given and no default model at {path}; pass --model DIR (a Hugging Face "
                         f"style xLSTM directory) or --spec SPEC")
    runner = xLSTMRunner.from_pretrained(model or path, dtype=args.dtype)
    if args.adapters:
        from ..train.adapters import load_adapters

        load_adapters(runner, args.adapters)
    return runner


def _sampling(args) -> dict:
    return dict(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                min_p=args.min_p, repetition_penalty=args.repetition_penalty, seed=args.seed, stop=args.stop or None)


def _gen_args(p):
    _model_args(p)
    p.add_argument("--prompt", default="def ", help="prompt text (or comma-separated token ids with --spec)")
    p.add_argument("--state-in", help="continue from a saved state (safetensors)")
    p.add_argument("--state-out", help="save the state after generation here (with --max-tokens 0: after the prompt)")
    p.add_argument("--quiet", action="store_true", help="print only the generated text")


def _prompt(runner, text: str):
    """Text for a model with a tokenizer; comma-separated token ids otherwise."""
    if runner.tokenizer is not None:
        return text
    try:
        return token_ids(text)
    except Exception:  # noqa: BLE001  (argparse's ArgumentTypeError: say it as this option)
        raise InputError(f"--prompt: this model has no tokenizer.json, so give comma-separated token ids "
                         f"(got {text!r})") from None


@command("generate", "generate text from a checkpoint (default: the shipped model)", _gen_args)
def cmd_generate(args) -> int:
    from ..memory import format_bytes
    from ..state import State

    runner = load_model(args)
    prompt = _prompt(runner, args.prompt)
    state = State.load(args.state_in, graph=runner.graph) if args.state_in else None
    if args.max_tokens == 0:  # nothing to generate: read the prompt, keep its state (e.g. a long system prompt)
        state = runner.prefill(prompt, state)
        if args.state_out:
            state.save(args.state_out)
        if not args.quiet:
            saved = f"; state saved to {args.state_out}" if args.state_out else " (no --state-out: nothing kept)"
            print(f"[read the prompt, {state.tokens_seen} tokens in the state{saved}]", file=sys.stderr)
        return 0
    last = None
    if not args.quiet and isinstance(prompt, str):
        print(prompt, end="", flush=True)
    for last in runner.stream(prompt, state=state, **_sampling(args)):
        print(last.text if runner.tokenizer is not None else f"{last.token} ", end="", flush=True)
    print()
    if last is not None and not args.quiet:
        print(f"[{last.prompt_tokens} prompt tokens at {last.prompt_tps:.1f} tok/s, {last.generation_tokens} generated "
              f"at {last.generation_tps:.1f} tok/s, peak memory {format_bytes(last.peak_memory * 1e9)}, "
              f"finish: {last.finish_reason}]", file=sys.stderr)
    if args.state_out and last is not None:
        last.state.save(args.state_out)
    return 0


def _chat_args(p):
    _model_args(p)
    p.add_argument("--system", default="", help="system prompt placed before the conversation")
    p.add_argument("--state-file", help="load the conversation state from here (if present), save it after each turn")


CHAT_HELP = "[/reset: start a new conversation, /exit: quit]"


@command("chat", "multi-turn chat that carries the recurrent state instead of re-reading the history "
                 "(uses the tokenizer's chat template when it has one)", _chat_args)
def cmd_chat(args) -> int:
    from ..generation.chat import ChatFormat
    from ..state import State

    runner = load_model(args)
    tok = runner.tokenizer
    if tok is None:
        raise InputError("chat needs a model with tokenizer.json (--spec models take token ids: use generate)")
    chat = ChatFormat(tok.chat_template, where=tok.chat_template_file, special_tokens=tok.special_tokens(),
                      system=args.system)
    state, history, consumed = None, chat.start(), None  # consumed: the text the state has read
    if args.state_file and Path(args.state_file).exists():
        state = State.load(args.state_file, graph=runner.graph)
        history, consumed = state.metadata.get("chat", history), state.metadata.get("chat_text", "")
        print(f"[resumed a conversation of {state.tokens_seen} tokens]", file=sys.stderr)
    print(CHAT_HELP, file=sys.stderr)
    sampling = dict(_sampling(args), stop=list(args.stop or []) + chat.stop)
    while True:
        try:
            line = input("User: ")
        except EOFError:
            print()
            return 0
        if line.strip() in ("/exit", "/quit"):
            return 0
        if line.strip() == "/reset":
            state, history, consumed = None, chat.start(), None
            if args.state_file and Path(args.state_file).exists():
                Path(args.state_file).unlink()
            print("[conversation cleared]", file=sys.stderr)
            continue
        message = {"role": "user", "content": line}
        # only the new turn is fed: the history lives in the recurrent state
        text, continues = chat.continuation(history, message, consumed if state is not None else None)
        ids = tok.encode(text, add_bos=False if chat.template else None)  # a template writes its own BOS
        print("Assistant:", end="", flush=True)
        reply, generated, last = [], [], None
        for last in runner.stream(ids, state=state if continues else None, **sampling):
            print(last.text, end="", flush=True)
            reply.append(last.text)
            generated.append(last.token)
        print()
        if last is not None:
            history = history + [message, {"role": "assistant", "content": "".join(reply)}]
            consumed = (consumed if continues else "") + text + tok.decode(generated, skip_special_tokens=False)
            state = last.state
            state.metadata.update(chat=history, chat_text=consumed)
            if args.state_file:
                state.save(args.state_file)
