"""The ASGI app (Starlette): ``POST /v1/chat/completions``, ``POST /v1/completions`` (streamed as server-sent
events or not), ``GET /v1/models``, ``GET /health``. Bad requests get an OpenAI-style error object and a 4xx."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import InputError
from ..generation.chat import ChatFormat
from . import params
from .engine import Engine
from .errors import APIError
from .scheduler import Job, Scheduler

log = logging.getLogger("xlstm_metal.serve")


def _error(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


class ClientLeft(Exception):
    """The client closed its connection before its answer was complete."""


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the ASGI server reports ``http.disconnect``)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Waiter:
    """A request's events from the scheduler, each awaited while watching the client's connection."""

    def __init__(self, request: Request):
        self.events: asyncio.Queue = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.gone = asyncio.ensure_future(_disconnected(request))

    def send(self, event: tuple) -> None:  # (from the scheduler's thread)
        with contextlib.suppress(RuntimeError):  # the server's loop has closed: nobody waits
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    async def next(self, timeout: float | None = None) -> tuple:
        """The next event; ``ClientLeft`` if the client goes first, ``TimeoutError`` after ``timeout`` seconds."""
        event = None if self.events.empty() else self.events.get_nowait()
        if event is None:
            get = asyncio.ensure_future(self.events.get())
            try:
                await asyncio.wait({get, self.gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:  # (also when this request's task is cancelled)
                get.cancel()
            event = get.result() if get.done() and not get.cancelled() else None
        if event is not None:
            if event[0] == "error":
                raise event[1]
            return event
        if self.gone.done():
            raise ClientLeft
        raise TimeoutError

    def close(self) -> None:
        self.gone.cancel()


def create_app(engine: Engine, *, default_max_tokens: int = 256, limit_max_tokens: int = 4096, max_batch: int = 32,
               max_queue: int = 64, request_timeout: float | None = None,
               prefill_chunk: int | None = None) -> Starlette:
    """The server over ``engine``. Requests share decode steps (up to ``max_batch`` rows); one that finds
    ``max_queue`` others waiting for room is answered 429. ``request_timeout`` (seconds): a request still waiting
    for room then is answered 503; one still generating ends its answer there (finish reason "length")."""
    scheduler = Scheduler(engine, max_batch=max_batch, max_queue=max_queue, prefill_chunk=prefill_chunk)
    tok = engine.runner.tokenizer
    chat = ChatFormat(tok.chat_template, where=tok.chat_template_file, special_tokens=tok.special_tokens()) \
        if tok is not None else None

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

    async def respond(request: Request, kind: str, ids_of, body: dict, stop: list[str]):
        sampling = params.sampling(body, default_max_tokens=default_max_tokens, limit_max_tokens=limit_max_tokens,
                                   max_n=max_batch)
        ids = await asyncio.to_thread(ids_of)  # (tokenizing runs beside the model's thread)
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        head = {"id": rid, "created": int(time.time()), "model": engine.model_id}
        deadline = None if request_timeout is None else time.monotonic() + request_timeout
        waiter, streaming = Waiter(request), False
        job = Job(rid, ids, sampling, waiter.send, stop=stop, deadline=deadline)
        waiter.gone.add_done_callback(lambda _: setattr(job, "cancelled", True))  # gone, or the handler is done
        try:
            scheduler.submit(job)
            try:
                await waiter.next(None if deadline is None else max(0.0, deadline - time.monotonic()))  # admitted
            except TimeoutError:
                raise APIError(f"the request waited {request_timeout:g} s for room in the batch; retry later",
                               status=503, type="server_error", code="timeout") from None
            if sampling.stream:
                streaming = True  # (the stream owns the job from here)
                return StreamingResponse(_events(kind, job, waiter, head), media_type="text/event-stream")
            texts, finish = [""] * sampling.n, [None] * sampling.n
            while (event := await waiter.next())[0] == "piece":
                _, i, text, reason = event
                texts[i] += text
                finish[i] = reason or finish[i]
        except ClientLeft:
            return Response(status_code=499)  # (nobody reads it)
        finally:
            if not streaming:  # answered, failed or abandoned: its rows leave the batch (once done, it has none)
                job.cancelled = True
                waiter.close()
        choices = []
        for i, (text, reason) in enumerate(zip(texts, finish)):
            choice = {"index": i, "finish_reason": reason, "logprobs": None}
            choice.update({"message": {"role": "assistant", "content": text}} if kind == "chat" else {"text": text})
            choices.append(choice)
        obj = "chat.completion" if kind == "chat" else "text_completion"
        return JSONResponse({**head, "object": obj, "choices": choices, "usage": event[1]})

    async def _events(kind, job, waiter, head):
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def chunk(i, delta_text, finish, first=False):
            if kind == "chat":
                delta = {"role": "assistant", "content": ""} if first else {"content": delta_text} if delta_text \
                    else {}
                choice = {"index": i, "delta": delta, "finish_reason": finish, "logprobs": None}
            else:
                choice = {"index": i, "text": delta_text, "finish_reason": finish, "logprobs": None}
            return f"data: {json.dumps({**head, 'object': obj, 'choices': [choice]})}\n\n"

        try:
            if kind == "chat":
                for i in range(job.sampling.n):
                    yield chunk(i, "", None, first=True)
            while (event := await waiter.next())[0] == "piece":
                yield chunk(*event[1:])
            if job.sampling.include_usage:
                yield f"data: {json.dumps({**head, 'object': obj, 'choices': [], 'usage': event[1]})}\n\n"
        except ClientLeft:
            return
        except APIError as exc:
            yield f"data: {json.dumps(exc.body())}\n\n"
        finally:  # a client that goes away closes this generator at its next token: its rows leave the batch
            job.cancelled = True
            waiter.close()
        yield "data: [DONE]\n\n"

    async def chat_completions(request: Request):
        body = await read(request)
        if chat is None:
            raise APIError("this model has no tokenizer, so no chat: use /v1/completions with token ids")
        messages = params.messages(body)

        def ids_of():
            text = chat.render(messages, add_generation_prompt=True)
            return engine.encode(text, add_bos=False if chat.template else None)  # a template writes its own BOS
        return await respond(request, "chat", ids_of, body, chat.stop)

    async def completions(request: Request):
        body = await read(request)
        prompt = params.prompt(body)
        return await respond(request, "completion", lambda: engine.encode(prompt), body, [])

    async def models(request: Request):
        return JSONResponse({"object": "list", "data": [{"id": engine.model_id, "object": "model", "created": 0,
                                                         "owned_by": "xlstm-metal"}]})

    async def health(request: Request):
        return JSONResponse({"status": "ok", "model": engine.model_id, **scheduler.load(),
                             "cached_states": len(engine.cache), "cache_bytes": engine.cache.nbytes})

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
        scheduler.stop()

    routes = [Route("/v1/chat/completions", chat_completions, methods=["POST"]),
              Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/models", models, methods=["GET"]), Route("/health", health, methods=["GET"])]
    app = Starlette(routes=routes, exception_handlers={APIError: api_error, InputError: input_error,
                                                      HTTPException: http_error},
                    lifespan=lifespan)
    return app
