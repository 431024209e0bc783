"""The FastAPI application: the OpenAI-compatible API, its model engine, the middleware stack."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from . import errors, playground
from .api import router
from .cancel import ClientWatch
from .chat import router as chat_router
from .engine import BUNDLED_MODEL, Engine, bundled_model_path
from .mcp_server import mount_mcp
from .playground import DemoTokenIssuer
from .response_store import ResponseStore
from .responses import router as responses_router
from .settings import Settings
from .stack import build_stack
from .telemetry import Telemetry

logger = logging.getLogger("reference_app")


def model_id_for(path: Path) -> str:
    if path.name == BUNDLED_MODEL:
        return "SmolLM2-135M-Instruct"
    return path.name.removesuffix(".gguf")


async def _load(engine: Engine) -> None:
    started = time.monotonic()
    logger.info(
        "loading %s (%d instance%s)",
        engine.model_path.name,
        engine.instances,
        "" if engine.instances == 1 else "s",
    )
    try:
        await engine.load()
    except Exception:
        logger.exception("the model failed to load; /health stays 503")
        return
    where = "GPU (all layers offloaded)" if engine.device == "cuda" else "CPU"
    logger.info("model ready on %s in %.1f s", where, time.monotonic() - started)


def create_app(
    settings: Settings | None = None,
    *,
    telemetry: Telemetry | None = None,
    demo_tokens: DemoTokenIssuer | None = None,
) -> Any:
    """Build the reference app (FastAPI inside the middleware stack) from ``settings``.

    The model loads in the background once the server starts; ``/health`` answers 503 until then.
    ``telemetry`` overrides where spans and metrics go (default: the ``OTEL_*`` environment).
    ``demo_tokens`` turns demo mode on: the playground page at ``/`` fetches a short-lived token
    from ``GET /demo/token`` and sends it as its bearer credential (see ``playground.py``).
    """
    settings = settings or Settings()
    model_path = (settings.model or bundled_model_path()).resolve()
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path}")
    engine = Engine(
        model_path,
        instances=settings.instances,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        gpu_layers=settings.gpu_layers,
        max_queue=settings.max_queue,
        logprobs=settings.logprobs,
        priority=(
            {"human": settings.human_weight, "agent": settings.agent_weight}
            if settings.priority
            else None
        ),
    )
    responses = ResponseStore(
        settings.store_url, ttl=settings.response_ttl, max_bytes=settings.response_store_max_bytes
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_load(engine))
        try:
            async with mcp_running():
                yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await engine.close()
            await responses.aclose()

    api = FastAPI(
        title="aimiddleware reference server",
        summary="An OpenAI-compatible API on llama-cpp-python, behind the aimiddleware stack.",
        version="0.1.0",
        lifespan=lifespan,
    )
    api.state.settings = settings
    api.state.engine = engine
    api.state.responses = responses
    api.state.model_id = settings.model_name or model_id_for(model_path)
    api.state.model_created = int(model_path.stat().st_mtime)
    api.state.fingerprint = "fp_" + hashlib.sha256(str(model_path).encode()).hexdigest()[:10]
    errors.install(api)
    api.include_router(router)
    api.include_router(chat_router)
    api.include_router(responses_router)
    if settings.auth:
        from .auth import issuer_router

        api.include_router(issuer_router(settings))
    if demo_tokens is None and settings.demo and settings.auth:
        demo_tokens = playground.demo_issuer(settings)
    playground.install(api, demo_tokens)
    mcp_running = mount_mcp(api, settings)
    # innermost: a generation whose client left is stopped, and the tier reaches the engine
    watched = ClientWatch(api, default_tier=settings.anonymous_tier)
    return build_stack(watched, settings, telemetry)


def app_from_env() -> Any:
    """Factory for ``uvicorn --factory reference_app.app:app_from_env`` (settings from AIMW_*)."""
    return create_app(Settings())
