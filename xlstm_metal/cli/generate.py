"""``xlstm-metal generate`` and ``xlstm-metal chat``."""
from __future__ import annotations

import sys
from pathlib import Path

from .registry import command
from ..generation.generate import format_gb

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "default_model"


def _model_args(p):
    p.add_argument("--model", help="checkpoint directory (Hugging Face layout) or Hub repo id (org/name, from the "
                   "HF cache or downloaded); default: the shipped small model")
    p.add_argument("--spec", help="instead of --model: a spec with random weights (token ids only)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="compute dtype (default: checkpoint's)")
    p.add_argument("--max-tokens", type=int, default=100)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def load_model(args):
    from ..runner import xLSTMRunner

    if args.spec:
        return xLSTMRunner.from_spec(args.spec, dtype=args.dtype or "float32", seed=args.seed or 0)
    path = Path(args.model) if args.model else DEFAULT_MODEL
    if not args.model and not (path / "config.json").exists():
        raise FileNotFoundError(f"no --model given and no default model at {path}; pass --model DIR (a Hugging Face "
                                f"style xLSTM directory) or --spec SPEC")
    return xLSTMRunner.from_pretrained(path, dtype=args.dtype)


def _sampling(args) -> dict:
    return dict(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                min_p=args.min_p, repetition_penalty=args.repetition_penalty, seed=args.seed, stop=args.stop or None)


def _gen_args(p):
    _model_args(p)
    p.add_argument("--prompt", default="def ", help="prompt text (or comma-separated token ids with --spec)")
    p.add_argument("--state-in", help="continue from a saved state (safetensors)")
    p.add_argument("--state-out", help="save the state after generation here")
    p.add_argument("--quiet", action="store_true", help="print only the generated text")


@command("generate", "generate text from a checkpoint (default: the shipped model)", _gen_args)
def cmd_generate(args) -> int:
    from ..state import State

    runner = load_model(args)
    prompt = args.prompt
    if runner.tokenizer is None:
        prompt = [int(t) for t in prompt.split(",") if t.strip()] if prompt.replace(",", "").strip().isdigit() else None
        if prompt is None:
            raise ValueError("this model has no tokenizer.json: give the prompt as comma-separated token ids")
    state = State.load(args.state_in, graph=runner.graph) if args.state_in else None
    last = None
    if not args.quiet and isinstance(prompt, str):
        print(prompt, end="", flush=True)
    for last in runner.stream(prompt, state=state, **_sampling(args)):
        print(last.text if runner.tokenizer is not None else f"{last.token} ", end="", flush=True)
    print()
    if last is not None and not args.quiet:
        print(f"[{last.prompt_tokens} prompt tokens at {last.prompt_tps:.1f} tok/s, {last.generation_tokens} generated "
              f"at {last.generation_tps:.1f} tok/s, peak memory {format_gb(last.peak_memory)}, "
              f"finish: {last.finish_reason}]", file=sys.stderr)
    if args.state_out and last is not None:
        last.state.save(args.state_out)
    return 0


def _chat_args(p):
    _model_args(p)
    p.add_argument("--system", default="", help="text placed before the conversation")
    p.add_argument("--state-file", help="load the conversation state from here (if present), save it after each turn")


@command("chat", "multi-turn chat that carries the recurrent state instead of re-reading the history", _chat_args)
def cmd_chat(args) -> int:
    from ..state import State

    runner = load_model(args)
    if runner.tokenizer is None:
        raise ValueError("chat needs a model with tokenizer.json")
    state = None
    if args.state_file and Path(args.state_file).exists():
        state = State.load(args.state_file, graph=runner.graph)
        print(f"[resumed a conversation of {state.tokens_seen} tokens]", file=sys.stderr)
    pending = args.system + ("\n" if args.system else "")
    sampling = dict(_sampling(args), stop=list(args.stop or []) + ["\nUser:"])
    while True:
        try:
            line = input("User: ")
        except EOFError:
            print()
            return 0
        if line.strip() in ("/exit", "/quit"):
            return 0
        # only the new turn is fed: the history lives in the recurrent state
        turn = f"{pending}User: {line}\nAssistant:"
        pending = ""
        print("Assistant:", end="", flush=True)
        last = None
        for last in runner.stream(turn, state=state, **sampling):
            print(last.text, end="", flush=True)
        print()
        if last is not None:
            state = last.state
            pending = "\n"
            if args.state_file:
                state.save(args.state_file)
