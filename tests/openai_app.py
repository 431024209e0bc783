"""The OpenAI-shaped streaming app of the SSE and normalisation tests:
:mod:`testkit.openai_app`, shared with the benchmarks."""

from __future__ import annotations

from testkit.openai_app import DONE, chunk, streaming_app

__all__ = ["DONE", "chunk", "streaming_app"]
