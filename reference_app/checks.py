"""What a request may ask of the engine: each check refuses what cannot be served with a 400
(or 404, 503) before any generation starts."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import Request

from .engine import Engine, Sampling, grammar_for
from .errors import APIError, model_loading
from .schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ResponseFormat
from .settings import Settings


def ready_engine(request: Request) -> Engine:
    """The app's engine, or 503 ``model_loading`` while the model loads."""
    engine: Engine = request.app.state.engine
    if not engine.ready.is_set():
        raise model_loading()
    return engine


def check_model(request: Request, model: str) -> None:
    if model != request.app.state.model_id:
        raise APIError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )


def check_logprobs(engine: Engine) -> None:
    if not engine.logprobs:
        raise APIError(
            400,
            "logprobs are off on this server; start it with AIMW_LOGPROBS=true to enable them.",
            param="logprobs",
            code="unsupported_parameter",
        )


def sampling_for(
    engine: Engine, body: ChatCompletionRequest | CompletionRequest, room: int, stop: list[str]
) -> Sampling:
    """The sampling a request asks for; ``room`` is what the context window leaves."""
    limit = getattr(body, "max_completion_tokens", None) or body.max_tokens
    return Sampling(
        logit_bias=logit_bias(engine, body.logit_bias),
        max_tokens=min(limit, room) if limit else room,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=[*stop, *body.stop_list()],
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
    )


def room_left(settings: Settings, prompt_tokens: int, param: str) -> int:
    """The tokens the context window has left after the prompt (400 when none)."""
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


def deadline_for(settings: Settings) -> float:
    return time.monotonic() + settings.generation_timeout


def token_ids(engine: Engine, ids: list[int], param: str) -> list[int]:
    """Token ids given by the caller, refused with 400 when the model has no such token
    (llama.cpp would fail on them, deep in a worker thread)."""
    top = engine.n_vocab - 1
    if any(not 0 <= token <= top for token in ids):
        raise APIError(400, f"Token ids must be between 0 and {top}.", param=param)
    return ids


def logit_bias(engine: Engine, bias: dict[str, float] | None) -> dict[int, float] | None:
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
    token_ids(engine, list(ids), "logit_bias")
    return ids


def grammar(body: ChatCompletionRequest) -> Any:
    """The llama.cpp grammar ``response_format`` asks for (``None``: free text)."""
    return format_grammar(body.response_format, "response_format")


def format_grammar(fmt: ResponseFormat | None, param: str) -> Any:
    """The grammar of an answer format (``param``: the request field that asked for it)."""
    if fmt is None or fmt.type == "text":
        return None
    try:
        if fmt.type == "json_object":
            return grammar_for(None)
        if fmt.json_schema is None or not fmt.json_schema.schema_:
            where = "response_format.json_schema" if param == "response_format" else param
            raise APIError(400, f"{where}.schema is required", param=param)
        return grammar_for(json.dumps(fmt.json_schema.schema_, sort_keys=True))
    except APIError:
        raise
    except Exception as exc:  # llama.cpp's converter rejects what it cannot express
        raise _unsupported_schema(exc, param) from None


def _unsupported_schema(exc: Exception, param: str) -> APIError:
    """What was wrong with a schema, in our words: the converter's text may quote internals."""
    if isinstance(exc, RecursionError):
        what = "it is nested too deeply"
    elif isinstance(exc, LookupError):
        what = "it refers to a definition or key it does not contain"
    else:
        what = "it uses a keyword, type, pattern or $ref this server cannot enforce"
    return APIError(400, f"Unsupported JSON schema in {param}: {what}.", param=param)


def completion_prompt(engine: Engine, body: CompletionRequest) -> list[int]:
    """The tokens of a completion's prompt: a string, a one-element list or token ids."""
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
        else token_ids(engine, [int(t) for t in prompt], "prompt")
    )
    if not tokens:
        raise APIError(400, "The prompt is empty.", param="prompt")
    return tokens


def embedding_texts(engine: Engine, body: EmbeddingRequest) -> list[str]:
    """The texts to embed: one per input, token ids spelled out, each within the window."""
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
            text = engine.detokenize(token_ids(engine, item, "input"))
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
    return texts
