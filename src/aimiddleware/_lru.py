"""The bounded tables every in-process cache is: least recently used, with optional deadlines.

Every table the library keeps per distinct client input (stored responses, rate-limit
counters, validated tokens, parsed headers) is one of these, so none of them grows with what
clients send. A table holds at most ``max_entries`` entries and, when given, ``max_bytes`` of
entry sizes (each entry's size is the caller's estimate). When a write goes past a bound,
entries whose deadline passed go first, then the least recently used ones. Dropping a live
entry counts in :attr:`LRUCache.evictions`, in the ``aimiddleware.cache.evictions``
OpenTelemetry counter when the API is installed, and in a warning line at most once a minute
per table.

Clocks are the caller's: ``now`` and deadlines share whatever unit the caller uses. Results of a
pure function of a client's input (a formatted duration, a metric's attribute set) are a
:class:`Memo` instead: bounded the same way, never evicting.

>>> cache: LRUCache[str, int] = LRUCache("example", max_entries=2)
>>> _ = cache.put("a", 1, 0.0)
>>> _ = cache.put("b", 2, 0.0)
>>> cache.get("a", 0.0)
1
>>> _ = cache.put("c", 3, 0.0)  # "b" is the least recently used
>>> cache.get("b", 0.0) is None, cache.evictions
(True, 1)
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Final, Generic, TypeVar

from .exceptions import ConfigurationError

__all__ = ["LRUCache", "Memo", "Node", "bound"]

logger = logging.getLogger("aimiddleware.cache")

K = TypeVar("K")
V = TypeVar("V")

_REPORT_EVERY: Final = 60.0
_NEVER: Final = math.inf
_counter: Any = None


def bound(name: str, value: int | None, minimum: int = 1) -> int | None:
    """Validate one size option: a whole number of at least ``minimum``, or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be a whole number of at least {minimum}")
    return value


def _eviction_counter() -> Any:
    global _counter
    if _counter is None:
        try:
            from opentelemetry import metrics
        except ImportError:
            _counter = False
        else:
            _counter = metrics.get_meter("aimiddleware").create_counter(
                "aimiddleware.cache.evictions",
                unit="{entry}",
                description="Live entries dropped from a full in-process cache",
            )
    return _counter


class Node(Generic[V]):
    """One entry: its value, its deadline (``inf``: none) and its size in bytes."""

    __slots__ = ("deadline", "size", "value")

    def __init__(self, value: V, deadline: float, size: int) -> None:
        self.value = value
        self.deadline = deadline
        self.size = size


class LRUCache(Generic[K, V]):
    """A bounded mapping, least recently used first out, expired entries before live ones."""

    __slots__ = (
        "_data",
        "_heap",
        "_reported_at",
        "_sequence",
        "_unreported",
        "evictions",
        "max_bytes",
        "max_entries",
        "name",
        "nbytes",
    )

    def __init__(self, name: str, max_entries: int, max_bytes: int | None = None) -> None:
        self.name = name
        self.max_entries: int = bound(f"{name}: max_entries", max_entries) or 1
        self.max_bytes = bound(f"{name}: max_bytes", max_bytes)
        self.evictions = 0
        self.nbytes = 0
        self._data: OrderedDict[K, Node[V]] = OrderedDict()
        self._heap: list[tuple[float, int, K]] = []
        self._sequence = itertools.count()
        self._reported_at = -_NEVER
        self._unreported = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def values(self) -> Iterator[V]:
        """The values held, expired ones included, least recently used first."""
        return (node.value for node in self._data.values())

    def __repr__(self) -> str:
        return (
            f"LRUCache({self.name!r}, max_entries={self.max_entries}, "
            f"max_bytes={self.max_bytes}, entries={len(self._data)}, bytes={self.nbytes})"
        )

    # -- reads -----------------------------------------------------------------------------

    def node(self, key: K, now: float) -> Node[V] | None:
        """The live entry of ``key`` (now the most recently used), or ``None``."""
        data = self._data
        node = data.get(key)
        if node is None:
            return None
        if node.deadline <= now:
            del data[key]
            self.nbytes -= node.size
            return None
        data.move_to_end(key)
        return node

    def get(self, key: K, now: float) -> V | None:
        """The live value of ``key`` (now the most recently used), or ``None``."""
        node = self._data.get(key)  # node(), inlined: caches are read on every request
        if node is not None and node.deadline > now:
            self._data.move_to_end(key)
            return node.value
        if node is not None:
            self.pop(key)  # expired
        return None

    # -- writes ----------------------------------------------------------------------------

    def put(self, key: K, value: V, now: float, deadline: float = _NEVER, size: int = 0) -> Node[V]:
        """Set ``key``, the most recently used, until ``deadline``; make room if needed."""
        data = self._data
        old = data.pop(key, None)
        if old is not None:
            self.nbytes -= old.size
        node = Node(value, deadline, size)
        data[key] = node
        self.nbytes += size
        if deadline != _NEVER:
            heapq.heappush(self._heap, (deadline, next(self._sequence), key))
        self._make_room(now)
        return node

    def touch(self, key: K, node: Node[V], deadline: float) -> None:
        """Move the deadline of ``key``'s entry ``node`` (as :meth:`node` returned it)."""
        node.deadline = deadline
        if deadline != _NEVER:
            heapq.heappush(self._heap, (deadline, next(self._sequence), key))
            if len(self._heap) > 1024 + 4 * len(self._data):
                self._compact()

    def resize(self, node: Node[V], size: int, now: float) -> None:
        """Record that ``node`` now holds ``size`` bytes; make room if needed."""
        self.nbytes += size - node.size
        node.size = size
        self._make_room(now)

    def pop(self, key: K) -> V | None:
        """Remove ``key``; its value, or ``None`` if it had none."""
        node = self._data.pop(key, None)
        if node is None:
            return None
        self.nbytes -= node.size
        return node.value

    def clear(self) -> None:
        self._data.clear()
        self._heap.clear()
        self.nbytes = 0

    def sweep(self, now: float) -> None:
        """Drop the entries whose deadline passed."""
        heap, data = self._heap, self._data
        while heap and heap[0][0] <= now:
            key = heapq.heappop(heap)[2]
            node = data.get(key)
            if node is not None and node.deadline <= now:
                del data[key]
                self.nbytes -= node.size

    def _compact(self) -> None:
        # rewritten and moved deadlines leave stale heap items behind: rebuilt from the live
        # entries when they dominate, so the heap stays bounded like the table
        sequence = self._sequence
        self._heap = [
            (node.deadline, next(sequence), key)
            for key, node in self._data.items()
            if node.deadline != _NEVER
        ]
        heapq.heapify(self._heap)

    # -- bounds ----------------------------------------------------------------------------

    def _over(self) -> bool:
        return len(self._data) > self.max_entries or (
            self.max_bytes is not None and self.nbytes > self.max_bytes
        )

    def _make_room(self, now: float) -> None:
        heap = self._heap
        if heap and heap[0][0] <= now:
            self.sweep(now)
        if len(self._heap) > 1024 + 4 * len(self._data):
            self._compact()
        if not self._over():
            return
        self.sweep(now)
        data = self._data
        evicted = 0
        # the entry just written is the most recent: it stays, even alone over max_bytes
        while len(data) > 1 and self._over():
            _, node = data.popitem(last=False)
            self.nbytes -= node.size
            evicted += 1
        if evicted:
            self._report(evicted)

    def _report(self, evicted: int) -> None:
        self.evictions += evicted
        counter = _eviction_counter()
        if counter:
            counter.add(evicted, {"aimiddleware.cache": self.name})
        self._unreported += evicted
        now = time.monotonic()
        if now - self._reported_at >= _REPORT_EVERY:
            logger.warning(
                "%s is full (%d entries, %d bytes; bounds %d entries, %s bytes): evicted %d "
                "entries, least recently used first; raise its bounds or use a shared store",
                self.name,
                len(self._data),
                self.nbytes,
                self.max_entries,
                self.max_bytes if self.max_bytes is not None else "no limit on",
                self._unreported,
            )
            self._reported_at = now
            self._unreported = 0


class Memo(Generic[K, V]):
    """The results of a pure function, for the first ``max_entries`` distinct arguments.

    For values that depend on their key alone (formatted durations, attribute sets): once the
    table is full, a new key's value is computed each time and not kept, so the table never
    grows with what clients send and nothing live is ever dropped (the common keys come first).

    >>> square = Memo(lambda n: n * n, max_entries=2)
    >>> square(3), square(4), square(5), len(square)
    (9, 16, 25, 2)
    """

    __slots__ = ("_make", "_max", "_table")

    def __init__(self, make: Callable[[K], V], max_entries: int) -> None:
        self._make = make
        self._max = max_entries
        self._table: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self._table)

    def __call__(self, key: K) -> V:
        table = self._table
        try:
            return table[key]  # one lookup when found (the common case)
        except KeyError:
            pass
        value = self._make(key)
        if len(table) < self._max:
            table[key] = value
        return value
