"""``xlstm-metal serve``: an OpenAI-compatible HTTP server (the ``serve`` extra: starlette, uvicorn)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from .registry import command
from .values import COUNT, integer, number
from .generate import DEFAULT_MODEL, DTYPES

PORT = integer(0, 65535)
POSITIVE = integer(1)


def _serve_args(p):
    p.add_argument("--model", help="checkpoint directory (Hugging Face layout) or Hub repo id (org/name); "
                   "default: the shipped small model")
    p.add_argument("--model-id", help="the name clients pass as `model` (default: the --model argument, or the "
                   "shipped model's directory name)")
    p.add_argument("--dtype", choices=DTYPES, help="compute dtype (default: the checkpoint's)")
    p.add_argument("--adapters", metavar="ADAPTER_DIR", help="LoRA adapters (from train --lora-rank) to apply, "
                                                         "unfused, on --model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=PORT, default=8080, help="port to listen on (0: any free port)")
    p.add_argument("--max-sessions-bytes", type=COUNT, default=2 * 10**9,
                   help="memory for cached conversation states (bytes; least recently used are dropped)")
    p.add_argument("--max-prompt-tokens", type=POSITIVE, default=32768,
                   help="a longer prompt is refused with a 400 error")
    p.add_argument("--max-batch", type=POSITIVE, default=32,
                   help="answers generated together (requests share decode steps; a request with n choices takes n)")
    p.add_argument("--max-queue", type=COUNT, default=64,
                   help="requests that may wait for room in the batch; more are answered 429")
    p.add_argument("--request-timeout", type=number(0, above=True), default=None,
                   help="seconds a request may take: waiting longer for room in the batch is answered 503, "
                   "generating longer ends the answer there (default: no limit)")
    p.add_argument("--max-tokens", type=POSITIVE, default=256, help="tokens to generate when a request does not say")
    p.add_argument("--max-tokens-limit", type=POSITIVE, default=8192, help="the most tokens a request may ask for")


def build_app(args):
    """The app for parsed ``serve`` arguments (the model is loaded here)."""
    from ..runner import xLSTMRunner
    from ..serve.app import create_app
    from ..serve.cache import StateCache
    from ..serve.engine import Engine

    path = Path(args.model) if args.model else DEFAULT_MODEL
    if not args.model and not (path / "config.json").exists():
        raise InputError(f"no --model given and no default model at {path}; pass --model DIR or REPO_ID")
    runner = xLSTMRunner.from_pretrained(path, dtype=args.dtype)
    if getattr(args, "adapters", None):
        from ..train.adapters import load_adapters

        load_adapters(runner, args.adapters)
    model_id = args.model_id or args.model or path.name
    engine = Engine(runner, StateCache(args.max_sessions_bytes), model_id=model_id,
                    max_prompt_tokens=args.max_prompt_tokens)
    return create_app(engine, default_max_tokens=args.max_tokens, limit_max_tokens=args.max_tokens_limit,
                      max_batch=args.max_batch, max_queue=args.max_queue, request_timeout=args.request_timeout)


@command("serve", "OpenAI-compatible HTTP server (chat/completions, completions, models) that keeps each "
                  "conversation's recurrent state, so a follow-up reads only its new tokens", _serve_args)
def cmd_serve(args) -> int:
    import logging

    try:
        import starlette  # noqa: F401
        import uvicorn
    except ModuleNotFoundError:
        raise InputError("serve needs the `serve` extra: pip install 'xlstm-metal[serve]' "
                         "(starlette, uvicorn)") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    app = build_app(args)
    model_id = args.model_id or args.model or DEFAULT_MODEL.name
    print(f"serving {args.model or DEFAULT_MODEL} as model {model_id!r} on http://{args.host}:{args.port}/v1",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
