"""The ASGI app (Starlette): ``POST /v1/chat/completions``, ``POST /v1/completions`` (streamed as server-sent
events or not), ``GET /v1/models``, ``GET /health``. Bad requests get an OpenAI-style error object and a 4xx."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ..errors import InputError
from ..generation.chat import ChatFormat
from . import params
from .engine import Engine
from .errors import APIError

log = logging.getLogger("xlstm_metal.serve")


def _error(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def _usage(last) -> dict:
    return {"prompt_tokens": last.prompt_tokens, "completion_tokens": last.completion_tokens,
            "total_tokens": last.prompt_tokens + last.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": last.cached_tokens}}


def create_app(engine: Engine, *, default_max_tokens: int = 256, limit_max_tokens: int = 4096,
               max_queue: int = 64, request_timeout: float | None = None) -> Starlette:
    """The server over ``engine``; model work runs on one worker thread, one request at a time, and a request that
    finds ``max_queue`` others already waiting is answered 429. ``request_timeout`` (seconds): a request still waiting
    for its turn then is answered 503; one still generating ends its answer there (finish reason "length")."""
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xlstm-serve")
    lock = asyncio.Lock()
    active = 0  # requests running or waiting for their turn

    def check_room():
        if active > max_queue:
            raise APIError(f"the server is busy: {active} requests are running or waiting (at most {max_queue} "
                           f"may wait); retry later", status=429, type="rate_limit_error", code="queue_full")

    @contextlib.asynccontextmanager
    async def turn(deadline):
        nonlocal active
        active += 1
        try:
            try:
                await asyncio.wait_for(lock.acquire(), None if deadline is None else deadline - time.monotonic())
            except asyncio.TimeoutError:
                raise APIError(f"the request waited {request_timeout:g} s for its turn; retry later", status=503,
                               type="server_error", code="timeout") from None
            try:
                yield
            finally:
                lock.release()
        finally:
            active -= 1
    tok = engine.runner.tokenizer
    chat = ChatFormat(tok.chat_template, where=tok.chat_template_file, special_tokens=tok.special_tokens()) \
        if tok is not None else None

    async def run(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(worker, fn, *args)

    async def read(request: Request) -> dict:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise APIError(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise APIError("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise APIError("model is required (see GET /v1/models)", param="model")
        if model != engine.model_id:
            raise APIError(f"the model {model!r} does not exist; this server serves {engine.model_id!r}",
                           status=404, param="model", code="model_not_found")
        return body

    async def respond(kind: str, ids_of, body: dict, stop: list[str]):
        sampling = params.sampling(body, default_max_tokens=default_max_tokens, limit_max_tokens=limit_max_tokens)
        check_room()
        ids = await asyncio.to_thread(ids_of)  # (tokenizing needs no turn: it does not wait behind generation)
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        head = {"id": rid, "created": created, "model": engine.model_id}
        deadline = None if request_timeout is None else time.monotonic() + request_timeout
        if sampling.stream:
            return StreamingResponse(_events(kind, ids, sampling, stop, head, deadline),
                                     media_type="text/event-stream")
        check_room()
        async with turn(deadline):
            pieces = await run(lambda: list(engine.complete(ids, sampling, stop, request_id=rid, deadline=deadline)))
        text, last = "".join(p.text for p in pieces), pieces[-1]
        choice = {"index": 0, "finish_reason": last.finish_reason, "logprobs": None}
        choice.update({"message": {"role": "assistant", "content": text}} if kind == "chat" else {"text": text})
        obj = "chat.completion" if kind == "chat" else "text_completion"
        return JSONResponse({**head, "object": obj, "choices": [choice], "usage": _usage(last)})

    async def _events(kind, ids, sampling, stop, head, deadline):
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def chunk(delta_text, finish, first=False):
            if kind == "chat":
                delta = {"role": "assistant", "content": ""} if first else {"content": delta_text} if delta_text \
                    else {}
                choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            else:
                choice = {"index": 0, "text": delta_text, "finish_reason": finish, "logprobs": None}
            return f"data: {json.dumps({**head, 'object': obj, 'choices': [choice]})}\n\n"

        try:
            async with turn(deadline):  # a client that goes away cancels this generator: the turn is released
                if kind == "chat":
                    yield chunk("", None, first=True)
                pieces = engine.complete(ids, sampling, stop, request_id=head["id"], deadline=deadline)
                last = None
                try:
                    while (piece := await run(next, pieces, None)) is not None:
                        last = piece
                        if piece.text or piece.finish_reason:
                            yield chunk(piece.text, piece.finish_reason)
                finally:
                    await run(pieces.close)
                if last is not None and sampling.include_usage:
                    yield f"data: {json.dumps({**head, 'object': obj, 'choices': [], 'usage': _usage(last)})}\n\n"
        except InputError as exc:
            yield f"data: {json.dumps(APIError(str(exc)).body())}\n\n"
        except APIError as exc:
            yield f"data: {json.dumps(exc.body())}\n\n"
        yield "data: [DONE]\n\n"

    async def chat_completions(request: Request):
        body = await read(request)
        if chat is None:
            raise APIError("this model has no tokenizer, so no chat: use /v1/completions with token ids")
        messages = params.messages(body)

        def ids_of():
            text = chat.render(messages, add_generation_prompt=True)
            return engine.encode(text, add_bos=False if chat.template else None)  # a template writes its own BOS
        return await respond("chat", ids_of, body, chat.stop)

    async def completions(request: Request):
        body = await read(request)
        prompt = params.prompt(body)
        return await respond("completion", lambda: engine.encode(prompt), body, [])

    async def models(request: Request):
        return JSONResponse({"object": "list", "data": [{"id": engine.model_id, "object": "model", "created": 0,
                                                         "owned_by": "xlstm-metal"}]})

    async def health(request: Request):
        return JSONResponse({"status": "ok", "model": engine.model_id, "requests": active, "cached_states": len(engine.cache),
                             "cache_bytes": engine.cache.nbytes})

    async def api_error(request: Request, exc: APIError):
        log.info("refused %s %s: %s", request.method, request.url.path, exc.message)
        return _error(exc)

    async def input_error(request: Request, exc: InputError):
        return _error(APIError(str(exc)))

    async def http_error(request: Request, exc: HTTPException):
        return _error(APIError(exc.detail, status=exc.status_code, type="invalid_request_error"))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        worker.shutdown(wait=False)

    routes = [Route("/v1/chat/completions", chat_completions, methods=["POST"]),
              Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/models", models, methods=["GET"]), Route("/health", health, methods=["GET"])]
    app = Starlette(routes=routes, exception_handlers={APIError: api_error, InputError: input_error,
                                                      HTTPException: http_error},
                    lifespan=lifespan)
    return app
