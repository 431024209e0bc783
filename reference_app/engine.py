"""The model engine: a pool of llama.cpp instances behind a fair line, weighted between tiers.

llama.cpp contexts are not thread-safe, so each instance generates for one request at a time, in
a worker thread. Tokens are handed to the event loop as they are produced. A request that stops
listening (client gone, deadline passed, server shutting down) sets a flag the worker checks
after every token, so its instance is free again within one token. Requests waiting for an
instance are served first come first served within a tier, and between tiers by weight
(waitline.py); the tier is the request's (cancel.py). What calls llama.cpp itself (loading, the
chat template, grammars, the worker-thread loops) is in llama.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cancel import current_request
from .llama import (
    BUNDLED_MODEL,
    DONE,
    GenerationTimeout,
    Sampling,
    bundled_model_path,
    chat_formatter,
    gpu_offload,
    grammar_for,
    load_instance,
    run_embedding,
    run_generation,
)
from .waitline import WaitLine

__all__ = [
    "BUNDLED_MODEL",
    "Engine",
    "GenerationTimeout",
    "QueueFull",
    "Sampling",
    "Stats",
    "bundled_model_path",
    "grammar_for",
]


class QueueFull(Exception):  # noqa: N818
    """Every instance is busy and the waiting line is full."""


@dataclass
class Stats:
    generations_started: int = 0
    generations_active: int = 0
    generations_cancelled: int = 0
    tokens_generated: int = 0
    # produced by the model after its request stopped listening (the worker sees the flag
    # after each token, so at most one per cancelled generation)
    tokens_after_cancel: int = 0


class Engine:
    """Loads ``instances`` copies of the model and runs generations on them, one each at a time.

    ``priority`` maps tiers to weights for the line of waiting requests (``None``: one first
    come first served line).
    """

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
        priority: Mapping[str, float] | None = None,
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
        self._idle: list[Any] = []  # free instances; none while anyone waits
        self._line: WaitLine[Any] = WaitLine(priority)
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
        return load_instance(
            self.model_path,
            n_ctx=self.embedding_context if embedding else self.n_ctx,
            n_threads=self.n_threads,
            gpu_layers=self.gpu_layers if self.device == "cuda" else 0,
            logprobs=self.logprobs,
            embedding=embedding,
        )

    async def load(self) -> None:
        """Load every instance (in a worker thread, so the server answers /health meanwhile)."""
        self.device = "cuda" if gpu_offload() else "cpu"
        loop = asyncio.get_running_loop()
        for _ in range(self.instances):
            llm = await loop.run_in_executor(self._executor, self._load_one)
            self._give_back(llm)
            self._tokenizer = self._tokenizer or llm
        self._formatter = chat_formatter(self._tokenizer, self.model_path.name)
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
        request = current_request()
        llm = await self._acquire(deadline, request.tier if request is not None else "")
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        self._running.add(cancel)
        self.stats.generations_started += 1
        self.stats.generations_active += 1
        if request is not None:  # the prompt is read now; choices of one request share it
            request.prompt_tokens = max(request.prompt_tokens, len(tokens))

        def arrived(item: Any) -> None:
            # on the loop: count what the model produced, read or not
            if isinstance(item, dict) and item["choices"][0]["finish_reason"] is None:
                if request is not None:
                    request.completion_tokens += 1
                if cancel.is_set():
                    self.stats.tokens_after_cancel += 1
            chunks.put_nowait(item)

        def push(item: Any) -> None:
            loop.call_soon_threadsafe(arrived, item)

        worker = loop.run_in_executor(
            self._executor, run_generation, llm, tokens, sampling, cancel, deadline, push
        )
        finished = False
        try:
            while True:
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        item = await chunks.get()
                except TimeoutError:
                    raise GenerationTimeout from None
                if item is DONE:
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
                self._give_back(llm)

            # The instance goes back only once its thread has stopped touching it (within one
            # token). A callback, not an await: a cancelled caller may not await here again.
            if worker.done():
                release(worker)
            else:
                worker.add_done_callback(release)

    def _give_back(self, llm: Any) -> None:
        """An instance is free: to the request served next, else to the idle ones."""
        if self._line.grant(llm) is None:
            self._idle.append(llm)

    async def _acquire(self, deadline: float, tier: str) -> Any:
        if self._closing:
            raise QueueFull("the server is shutting down")
        if self._idle:  # nobody waits while an instance is idle
            return self._idle.pop()
        if self._waiting >= self.max_queue:
            raise QueueFull(f"{self._waiting} requests are already waiting")
        self._waiting += 1
        place = self._line.join(tier)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await place
        except BaseException as exc:
            if place.done() and not place.cancelled():
                # granted as the wait ended (deadline, client gone): the next one gets it
                self._give_back(place.result())
            else:
                place.cancel()
                self._line.leave(place)
            if isinstance(exc, TimeoutError):
                raise GenerationTimeout from None
            raise
        finally:
            self._waiting -= 1

    @property
    def waiting(self) -> int:
        return self._waiting

    def waiting_by_tier(self) -> dict[str, int]:
        """How many requests wait for an instance, per tier."""
        return self._line.waiting()

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
            return await loop.run_in_executor(self._executor, run_embedding, embedder, inputs)
