"""Work a request goes on with after its client left, as a fact of the request."""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter, time_ns
from typing import Final

from ._facts import Scope

__all__ = ["CONTINUATION_KEY", "Continuation", "continue_work", "get_continuation"]

#: the work the request goes on with after its client left (``Continuation``)
CONTINUATION_KEY: Final = "aimiddleware.continuation"

logger = logging.getLogger("aimiddleware")


class Continuation:
    """Work that goes on for a request after its client left.

    ``IdempotencyMiddleware`` keeps the app running when the client of a claimed request goes,
    to record the whole answer; it says so with :func:`continue_work` and calls :meth:`end`
    when the app and the record are done. A middleware that reports on requests
    (``TracingMiddleware``) finds it with :func:`get_continuation` once the request's own call
    returned, and hears of its end through :meth:`on_end`.

    >>> scope = {"type": "http"}
    >>> work = continue_work(scope, "idempotency.complete")
    >>> ended = []
    >>> get_continuation(scope).on_end(lambda w: ended.append(w.error))
    >>> work.end()
    >>> ended, work.done
    ([None], True)
    """

    __slots__ = ("_callbacks", "ended_ns", "error", "name", "started_ns", "started_perf")

    def __init__(self, name: str) -> None:
        self.name = name  # what the work is, for whoever reports it (a span name)
        self.started_ns = time_ns()  # when the client left (wall clock, ns)
        self.started_perf = perf_counter()  # the same moment, for durations
        self.ended_ns: int | None = None
        self.error: BaseException | None = None  # what the work raised, if anything
        self._callbacks: list[Callable[[Continuation], None]] = []

    @property
    def done(self) -> bool:
        return self.ended_ns is not None

    def on_end(self, callback: Callable[[Continuation], None]) -> None:
        """Call ``callback(self)`` when the work ends (now, if it already has)."""
        if self.ended_ns is None:
            self._callbacks.append(callback)
        else:
            self._call(callback)

    def end(self, error: BaseException | None = None) -> None:
        """The work ended (``error``: what it raised). Only the first call counts."""
        if self.ended_ns is not None:
            return
        self.ended_ns = time_ns()
        self.error = error
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._call(callback)

    def _call(self, callback: Callable[[Continuation], None]) -> None:
        try:
            callback(self)
        except Exception:
            # an observer's fault must not reach the work it observes
            logger.warning("a continuation's observer failed", exc_info=True)


def continue_work(scope: Scope, name: str) -> Continuation:
    """Say that the request's work goes on after its client left; returns the
    :class:`Continuation` to :meth:`~Continuation.end` when it is done."""
    work = Continuation(name)
    scope[CONTINUATION_KEY] = work
    return work


def get_continuation(scope: Scope) -> Continuation | None:
    """The work the request goes on with after its client left, if any."""
    work = scope.get(CONTINUATION_KEY)
    return work if isinstance(work, Continuation) else None
