"""The OpenAI-compatible endpoints."""

from __future__ import annotations

import base64
import json
import math
import os
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from .engine import Engine, GenerationTimeout, QueueFull, Sampling, grammar_for
from .errors import APIError, envelope
from .schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from .settings import Settings

router = APIRouter()

OWNER = "aimiddleware-reference"


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    if not engine.ready.is_set():
        raise APIError(
            503,
            "the model is still loading",
            type="server_error",
            code="model_loading",
            headers={"Retry-After": "1"},
        )
    return engine


def _check_model(request: Request, model: str) -> None:
    if model != request.app.state.model_id:
        raise APIError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )


def _check_logprobs(engine: Engine) -> None:
    if not engine.logprobs:
        raise APIError(
            400,
            "logprobs are off on this server; start it with AIMW_LOGPROBS=true to enable them.",
            param="logprobs",
            code="unsupported_parameter",
        )


def _sampling(
    engine: Engine, body: ChatCompletionRequest | CompletionRequest, room: int, stop: list[str]
) -> Sampling:
    limit = getattr(body, "max_completion_tokens", None) or body.max_tokens
    return Sampling(
        logit_bias=_logit_bias(engine, body.logit_bias),
        max_tokens=min(limit, room) if limit else room,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=[*stop, *body.stop_list()],
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
    )


def _room(settings: Settings, prompt_tokens: int, param: str) -> int:
    room = settings.n_ctx - prompt_tokens
    if room < 1:
        raise APIError(
            400,
            f"This model's maximum context length is {settings.n_ctx} tokens, "
            f"the prompt has {prompt_tokens}.",
            param=param,
            code="context_length_exceeded",
        )
    return room


def _deadline(settings: Settings) -> float:
    return time.monotonic() + settings.generation_timeout


def _token_ids(engine: Engine, ids: list[int], param: str) -> list[int]:
    """Token ids given by the caller, refused with 400 when the model has no such token
    (llama.cpp would fail on them, deep in a worker thread)."""
    top = engine.n_vocab - 1
    if any(not 0 <= token <= top for token in ids):
        raise APIError(400, f"Token ids must be between 0 and {top}.", param=param)
    return ids


def _logit_bias(engine: Engine, bias: dict[str, float] | None) -> dict[int, float] | None:
    """``logit_bias`` with its token ids checked against the vocabulary and its biases against
    OpenAI's range (-100 bans a token, 100 all but forces it)."""
    if not bias:
        return None
    try:
        ids = {int(token): value for token, value in bias.items()}
    except ValueError:
        raise APIError(400, "logit_bias keys must be token ids.", param="logit_bias") from None
    if any(not -100 <= value <= 100 for value in ids.values()):
        raise APIError(400, "logit_bias values must be between -100 and 100.", param="logit_bias")
    _token_ids(engine, list(ids), "logit_bias")
    return ids


def _overloaded(exc: QueueFull) -> APIError:
    return APIError(
        503,
        f"The server is overloaded ({exc}); retry shortly.",
        type="server_error",
        code="server_overloaded",
        headers={"Retry-After": "1"},
    )


def _timeout() -> APIError:
    return APIError(
        504,
        "The generation did not finish within the server's deadline.",
        type="server_error",
        code="generation_timeout",
    )


def _sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


_DONE = b"data: [DONE]\n\n"


class _Run:
    """One generation: primes the first chunk so queue and deadline errors get their status."""

    def __init__(
        self, engine: Engine, tokens: list[int], sampling: Sampling, deadline: float
    ) -> None:
        self.stream = engine.generate(tokens, sampling, deadline=deadline)
        self.prompt_tokens = len(tokens)
        self.completion_tokens = 0
        self.first: dict[str, Any] | None = None

    async def start(self) -> None:
        try:
            self.first = await anext(self.stream, None)
        except QueueFull as exc:
            raise _overloaded(exc) from None
        except GenerationTimeout:
            raise _timeout() from None

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The primed chunk, then the rest; raises GenerationTimeout mid-way."""
        try:
            if self.first is None:
                return
            yield self._count(self.first)
            async for chunk in self.stream:
                yield self._count(chunk)
        finally:
            await self.stream.aclose()

    def _count(self, chunk: dict[str, Any]) -> dict[str, Any]:
        if chunk["choices"][0]["finish_reason"] is None:
            self.completion_tokens += 1
        return chunk

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def _grammar(body: ChatCompletionRequest) -> Any:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    try:
        if fmt.type == "json_object":
            return grammar_for(None)
        if fmt.json_schema is None or not fmt.json_schema.schema_:
            raise APIError(
                400, "response_format.json_schema.schema is required", param="response_format"
            )
        return grammar_for(json.dumps(fmt.json_schema.schema_, sort_keys=True))
    except APIError:
        raise
    except Exception as exc:  # llama.cpp's converter rejects what it cannot express
        raise _unsupported_schema(exc) from None


def _unsupported_schema(exc: Exception) -> APIError:
    """What was wrong with a schema, in our words: the converter's text may quote internals."""
    if isinstance(exc, RecursionError):
        what = "it is nested too deeply"
    elif isinstance(exc, LookupError):
        what = "it refers to a definition or key it does not contain"
    else:
        what = "it uses a keyword, type, pattern or $ref this server cannot enforce"
    return APIError(
        400, f"Unsupported JSON schema in response_format: {what}.", param="response_format"
    )


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Any:
    engine = _engine(request)
    settings: Settings = request.app.state.settings
    _check_model(request, body.model)
    if body.n != 1:
        raise APIError(400, "Only n=1 is supported.", param="n")
    if body.echo or body.suffix:
        raise APIError(
            400, "echo and suffix are not supported.", param="echo" if body.echo else "suffix"
        )
    prompt = body.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        if len(prompt) != 1:
            raise APIError(400, "Only one prompt per request is supported.", param="prompt")
        prompt = prompt[0]
    tokens = (
        engine.tokenize(prompt)
        if isinstance(prompt, str)
        else _token_ids(engine, [int(t) for t in prompt], "prompt")
    )
    if not tokens:
        raise APIError(400, "The prompt is empty.", param="prompt")
    sampling = _sampling(engine, body, _room(settings, len(tokens), "prompt"), [])
    if body.logprobs is not None:
        _check_logprobs(engine)
    sampling.logprobs = body.logprobs
    run = _Run(engine, tokens, sampling, _deadline(settings))
    await run.start()
    base = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": request.app.state.model_id,
    }
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _completion_stream(run, base, include_usage), media_type="text/event-stream"
        )
    text: list[str] = []
    finish = "stop"
    try:
        async for chunk in run.chunks():
            text.append(chunk["choices"][0]["text"])
            finish = chunk["choices"][0]["finish_reason"] or finish
    except GenerationTimeout:
        raise _timeout() from None
    return {
        **base,
        "choices": [{"index": 0, "text": "".join(text), "logprobs": None, "finish_reason": finish}],
        "usage": run.usage(),
    }


def _completion_stream(
    run: _Run, base: dict[str, Any], include_usage: bool
) -> AsyncIterator[bytes]:
    def choice(raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "index": 0,
            "text": raw["text"],
            "logprobs": raw.get("logprobs"),
            "finish_reason": raw["finish_reason"],
        }

    return _events(run, base, include_usage, choice)


_TIMEOUT_EVENT = _sse(
    envelope(
        "The generation did not finish within the server's deadline.",
        "server_error",
        None,
        "generation_timeout",
    )
)


async def _events(
    run: _Run,
    head: dict[str, Any],
    include_usage: bool,
    choice: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    first: dict[str, Any] | None = None,
) -> AsyncIterator[bytes]:
    """The SSE frames of a stream: one per token, the usage chunk if asked, then ``[DONE]``.

    A deadline that passes mid-stream ends it with an error event, then ``[DONE]``.
    """
    if include_usage:
        head = {**head, "usage": None}  # OpenAI sends usage: null on every chunk but the last
    if first is not None:
        yield _sse({**head, "choices": [first]})
    try:
        async for chunk in run.chunks():
            raw = chunk["choices"][0]
            if raw["finish_reason"] is None and not raw["text"]:
                continue  # part of a multi-byte character: it comes with the next token
            yield _sse({**head, "choices": [choice(raw)]})
    except GenerationTimeout:
        yield _TIMEOUT_EVENT
        yield _DONE
        return
    if include_usage:
        yield _sse({**head, "choices": [], "usage": run.usage()})
    yield _DONE


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    engine = _engine(request)
    _check_model(request, body.model)
    if body.dimensions is not None:
        raise APIError(400, "This model does not support shortened embeddings.", param="dimensions")
    raw = body.input
    inputs: list[str] | list[list[int]]
    if isinstance(raw, str):
        inputs = [raw]
    elif raw and all(isinstance(x, int) for x in raw):
        inputs = [list(raw)]  # type: ignore[arg-type]
    else:
        inputs = list(raw)  # type: ignore[arg-type]
    if not inputs or any(len(x) == 0 for x in inputs):
        raise APIError(400, "Every input must be non-empty.", param="input")
    longest = engine.embedding_context
    texts: list[str] = []
    for item in inputs:
        if isinstance(item, str):
            text = item
        else:
            # llama-cpp-python embeds text only: token ids are embedded as the text they spell
            text = engine.detokenize(_token_ids(engine, item, "input"))
            if not text:
                raise APIError(400, "The input token ids spell no text.", param="input")
        # llama.cpp refuses a longer input inside its worker thread (a 500 otherwise)
        count = len(engine.tokenize(text))
        if count > longest:
            raise APIError(
                400,
                f"This model's maximum input length for embeddings is {longest} tokens, "
                f"an input has {count}.",
                param="input",
                code="context_length_exceeded",
            )
        texts.append(text)
    vectors, used = await engine.embed(texts)
    data = []
    for i, vector in enumerate(vectors):
        if not all(math.isfinite(x) for x in vector):
            raise APIError(500, "The model produced a non-finite embedding.", type="server_error")
        value: Any = vector
        if body.encoding_format == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": request.app.state.model_id,
        "usage": {"prompt_tokens": used, "total_tokens": used},
    }


def _model_card(request: Request) -> dict[str, Any]:
    return {
        "id": request.app.state.model_id,
        "object": "model",
        "created": request.app.state.model_created,
        "owned_by": OWNER,
    }


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(request)]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    _check_model(request, model_id)
    return _model_card(request)


@router.get("/health", response_model=None)
async def health(request: Request) -> Any:
    engine: Engine = request.app.state.engine
    stats = engine.stats
    body = {
        "status": "ok" if engine.ready.is_set() else "loading",
        "model": request.app.state.model_id,
        "device": engine.device,
        # which worker answered: with --workers N each process loads its own model
        "pid": os.getpid(),
        "instances": engine.instances,
        "waiting": engine.waiting,
        "generations_started": stats.generations_started,
        "generations_active": stats.generations_active,
        "generations_cancelled": stats.generations_cancelled,
    }
    if not engine.ready.is_set():
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    return body
