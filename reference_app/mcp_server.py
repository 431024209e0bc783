"""The app's operations as MCP tools at ``/mcp`` (Streamable HTTP, stateless).

Each tool calls the app's own OpenAI-compatible endpoint in-process (the FastAPI app, not the
middleware stack around it: the ``/mcp`` request already went through the stack), so a tool
validates, answers and fails exactly as the REST operation does. The endpoint is guarded by
``aimiddleware.mcp``: each tool needs the scope of its operation (``MCPScopeMiddleware`` around
the endpoint), and the stack checks the Origin allow-list (``origin_guard``, outside OAuth).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import httpx
from fastapi import FastAPI
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field
from starlette.routing import Route

from aimiddleware.mcp import MCPOriginMiddleware, MCPScopeMiddleware

from .settings import Settings

PATH = "/mcp"
ENDPOINT_SCOPES = ("mcp",)
# each tool needs the scope of the REST operation it calls; a tool missing here is refused
TOOL_SCOPES: dict[str, tuple[str, ...]] = {
    "chat": ("chat",),
    "embeddings": ("embeddings",),
    "list_models": ("models:read",),
}


class Message(BaseModel):
    role: Literal["system", "user", "assistant"] = Field(
        description="who says it: 'system' sets the assistant's behaviour, 'user' asks, "
        "'assistant' is an earlier reply"
    )
    content: str = Field(description="the text of the message")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatReply(BaseModel):
    content: str = Field(description="the assistant's reply")
    finish_reason: str = Field(description="'stop' (finished) or 'length' (hit max_tokens)")
    model: str
    usage: Usage


class Embedding(BaseModel):
    index: int = Field(description="position of the input this vector belongs to")
    embedding: list[float] = Field(description="L2-normalised vector")


class Embeddings(BaseModel):
    model: str
    data: list[Embedding]
    prompt_tokens: int


class Model(BaseModel):
    id: str = Field(description="the model id to pass as `model`")
    owned_by: str
    created: int = Field(description="Unix time the model file was created")


class Models(BaseModel):
    models: list[Model]


class _Operations:
    """Calls the FastAPI app's own endpoints in-process; errors become tool errors."""

    def __init__(self, api: FastAPI) -> None:
        self.api = api
        self.client: httpx.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        transport = httpx.ASGITransport(app=self.api)
        async with httpx.AsyncClient(transport=transport, base_url="http://reference-app") as c:
            self.client = c
            try:
                yield
            finally:
                self.client = None

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        if self.client is None:
            raise ToolError("the server is shutting down")
        response = await self.client.request(method, path, json=body, timeout=None)
        try:
            payload = response.json()
        except ValueError:
            raise ToolError(f"the operation failed (HTTP {response.status_code})") from None
        if response.status_code >= 400:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            code = error.get("code") or error.get("type") or response.status_code
            raise ToolError(f"{error.get('message', 'the operation failed')} ({code})")
        return payload


def build_server(api: FastAPI, operations: _Operations) -> MCPServer:
    """The MCP server: one tool per operation, with schemas an agent can fill in."""
    server = MCPServer(
        "aimiddleware-reference",
        instructions=(
            "Tools of an OpenAI-compatible server running a small local model. Call "
            "list_models for the model id, chat for a reply, embeddings for vectors. "
            "Each tool needs the OAuth scope named in its description."
        ),
    )

    @server.tool(
        title="Chat completion",
        annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False),
    )
    async def chat(
        messages: Annotated[
            list[Message],
            Field(
                min_length=1,
                description='the conversation so far, e.g. [{"role": "user", "content": "Hi"}]',
            ),
        ],
        max_tokens: Annotated[int, Field(ge=1, le=2048, description="reply length cap")] = 256,
        temperature: Annotated[
            float, Field(ge=0.0, le=2.0, description="0 is deterministic, higher is varied")
        ] = 0.7,
        seed: Annotated[int | None, Field(description="fixes sampling for a repeat")] = None,
    ) -> ChatReply:
        """Generate the assistant's next message for a conversation (POST /v1/chat/completions).
        Needs the OAuth scope `chat`."""
        result = await operations.call(
            "POST",
            "/v1/chat/completions",
            {
                "model": api.state.model_id,
                "messages": [m.model_dump() for m in messages],
                "max_tokens": max_tokens,
                "temperature": temperature,
                "seed": seed,
            },
        )
        choice = result["choices"][0]
        return ChatReply(
            content=choice["message"]["content"],
            finish_reason=choice["finish_reason"],
            model=result["model"],
            usage=Usage(**result["usage"]),
        )

    @server.tool(
        title="Embeddings",
        annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False),
    )
    async def embeddings(
        input: Annotated[
            list[str],
            Field(min_length=1, max_length=64, description="texts to embed, one vector each"),
        ],
    ) -> Embeddings:
        """Embed texts as vectors for similarity search (POST /v1/embeddings).
        Needs the OAuth scope `embeddings`."""
        result = await operations.call(
            "POST", "/v1/embeddings", {"model": api.state.model_id, "input": input}
        )
        return Embeddings(
            model=result["model"],
            data=[Embedding(index=d["index"], embedding=d["embedding"]) for d in result["data"]],
            prompt_tokens=result["usage"]["prompt_tokens"],
        )

    @server.tool(
        title="List models",
        annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False),
    )
    async def list_models() -> Models:
        """List the models this server serves (GET /v1/models). Needs the OAuth scope
        `models:read`."""
        result = await operations.call("GET", "/v1/models")
        return Models(
            models=[
                Model(id=m["id"], owned_by=m["owned_by"], created=m["created"])
                for m in result["data"]
            ]
        )

    return server


def origin_guard(app: Any, settings: Settings) -> MCPOriginMiddleware:
    """The Origin check of ``/mcp``, outside the auth middleware: a foreign page gets the
    transport's 403 whether or not it has a token."""
    return MCPOriginMiddleware(app, allowed_origins=settings.mcp_allowed_origins, paths=[PATH])


def mount_mcp(
    api: FastAPI, settings: Settings
) -> Callable[[], contextlib.AbstractAsyncContextManager[None]]:
    """Add the guarded MCP endpoint to ``api`` at ``/mcp``; returns what the app's lifespan
    must enter (the SDK's session manager and the in-process client)."""
    operations = _Operations(api)
    server = build_server(api, operations)
    endpoint = server.streamable_http_app(
        streamable_http_path=PATH,
        stateless_http=True,
        # Origin is MCPOriginMiddleware's job (one JSON-RPC 403 for every MCP server)
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    guarded = MCPScopeMiddleware(
        endpoint,
        scopes=ENDPOINT_SCOPES,
        tools=TOOL_SCOPES,
        resource_metadata=settings.mcp_resource_metadata,
    )
    api.router.routes.append(Route(PATH, endpoint=guarded))

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        async with server.session_manager.run(), operations.running():
            yield

    return running
