"""The OpenAI-compatible endpoints but chat (chat.py): completions, embeddings, models, health.

The checks of each request are in checks.py, generations and their streams in runs.py, the error
answers in errors.py.
"""

from __future__ import annotations

import base64
import math
import os
import struct
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from .checks import (
    check_logprobs,
    check_model,
    completion_prompt,
    deadline_for,
    embedding_texts,
    ready_engine,
    room_left,
    sampling_for,
)
from .engine import Engine
from .errors import APIError, retry_signals
from .runs import Run, completion_stream
from .schemas import CompletionRequest, EmbeddingRequest
from .settings import Settings

router = APIRouter()

OWNER = "aimiddleware-reference"


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Any:
    engine = ready_engine(request)
    settings: Settings = request.app.state.settings
    check_model(request, body.model)
    tokens = completion_prompt(engine, body)
    sampling = sampling_for(engine, body, room_left(settings, len(tokens), "prompt"), [])
    if body.logprobs is not None:
        check_logprobs(engine)
    sampling.logprobs = body.logprobs
    run = Run(engine, tokens, sampling, deadline_for(settings))
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
            completion_stream(run, base, include_usage), media_type="text/event-stream"
        )
    text, finish = await run.text()
    return {
        **base,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        "usage": run.usage(),
    }


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    engine = ready_engine(request)
    check_model(request, body.model)
    texts = embedding_texts(engine, body)
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
    check_model(request, model_id)
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
        "waiting_by_tier": {"agent": 0, "human": 0, **engine.waiting_by_tier()},
        "generations_started": stats.generations_started,
        "generations_active": stats.generations_active,
        "generations_cancelled": stats.generations_cancelled,
    }
    if not engine.ready.is_set():
        return JSONResponse(body, status_code=503, headers=retry_signals(1))
    return body
