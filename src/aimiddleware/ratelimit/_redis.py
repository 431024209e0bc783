"""The Redis engine: one Lua script per operation, on the store layer's shared client.

A request has several limits (requests, tokens, per-model, a concurrency slot) that must be
charged all or nothing, token reservations that must be refunded, and slots that must expire
with their lease. Those are the three scripts below, run on the ``redis.asyncio`` client that
:func:`aimiddleware.stores.clients.open_redis` shares between every middleware naming the same
URL. Every key of one request carries the same hash tag, so on Redis Cluster each script runs
in one slot. Time is the server's (``TIME``), so workers with skewed clocks agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from ..stores.clients import RedisLease
from ._engine import Check, Decision, Engine, Outcome, Slot

__all__ = ["RedisEngine"]

# Shared by the scripts: a counter window is a hash {w: window index, c: current count,
# p: previous window's count}; the sliding window counter weighs p by the share of the
# previous window still inside the sliding window, exactly as limits does (floor).
_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local strategy = tonumber(ARGV[1])
local function counter(key, window)
  local v = redis.call('HMGET', key, 'w', 'c', 'p')
  local index = math.floor(now / window)
  local w, c, p = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if w == nil or w < index - 1 then c, p = 0, 0
  elseif w == index - 1 then p, c = c, 0 end
  local elapsed = now - index * window
  local used = c
  if strategy == 1 then used = used + math.floor(p * (window - elapsed) / window) end
  return index, c, p, used, elapsed
end
-- ms into a window after which the previous count's weighted share leaves `room`
local function fits_at(window, room, previous)
  if room + 1 >= previous then return 0 end
  return math.floor(window * (1 - (room + 1) / previous)) + 1
end
local function moving(key, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local used = 0
  for i = 1, #entries, 2 do
    used = used + tonumber(string.match(entries[i], ':(%-?%d+)$'))
  end
  return entries, used
end
"""

# KEYS: one per window check, then the slot's lease set (when ARGV[4] > 0).
# ARGV: strategy, n checks, request token, slot limit (0: none), lease ms,
#       then limit, window ms, cost for each check.
# Returns: allowed (0/1), failed position (0-based; n for the slot; -1), slots in use,
#          then remaining, reset ms, retry ms, charged window per check.
_ACQUIRE = (
    _COMMON
    + """
local n, token = tonumber(ARGV[2]), ARGV[3]
local slot_limit, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
local failed = -1
local out = {}
local staged = {}
for i = 1, n do
  local limit = tonumber(ARGV[3 + 3 * i])
  local window = tonumber(ARGV[4 + 3 * i])
  local cost = tonumber(ARGV[5 + 3 * i])
  local used, reset, retry, index
  if strategy == 3 then
    local entries
    entries, used = moving(KEYS[i], window)
    reset = window
    if #entries > 0 then reset = tonumber(entries[2]) + window - now end
    retry = window
    if cost <= limit then
      local freed = 0
      for j = 1, #entries, 2 do
        freed = freed + tonumber(string.match(entries[j], ':(%-?%d+)$'))
        if used - freed + cost <= limit then
          retry = tonumber(entries[j + 1]) + window - now
          break
        end
      end
    end
    index = 0
  else
    local c, p, elapsed
    index, c, p, used, elapsed = counter(KEYS[i], window)
    reset = window - elapsed
    if strategy == 2 then
      retry = window - elapsed
    elseif c + cost <= limit and p > 0 then
      retry = math.max(fits_at(window, limit - cost - c, p) - elapsed, 1)
    else
      retry = window - elapsed
      if c > 0 and cost <= limit then retry = retry + fits_at(window, limit - cost, c) end
    end
    staged[i] = {index, c, p}
  end
  if failed < 0 and (cost > limit or used + cost > limit) then failed = i - 1 end
  out[#out + 1] = math.max(0, limit - used)
  out[#out + 1] = reset
  out[#out + 1] = retry
  out[#out + 1] = index
end
local in_use = 0
local slot_key = KEYS[n + 1]
if slot_limit > 0 then
  redis.call('ZREMRANGEBYSCORE', slot_key, '-inf', now)
  in_use = redis.call('ZCARD', slot_key)
  if failed < 0 and in_use >= slot_limit then failed = n end
end
if failed >= 0 then
  local result = {0, failed, in_use}
  for i = 1, #out do result[#result + 1] = out[i] end
  return result
end
for i = 1, n do
  local window = tonumber(ARGV[4 + 3 * i])
  local cost = tonumber(ARGV[5 + 3 * i])
  if strategy == 3 then
    redis.call('ZADD', KEYS[i], now, token .. ':' .. cost)
    redis.call('PEXPIRE', KEYS[i], window)
  else
    local s = staged[i]
    redis.call('HSET', KEYS[i], 'w', s[1], 'c', s[2] + cost, 'p', s[3])
    redis.call('PEXPIRE', KEYS[i], 2 * window)
  end
  out[4 * i - 3] = math.max(0, out[4 * i - 3] - cost)
end
if slot_limit > 0 then
  redis.call('ZADD', slot_key, now + lease, token)
  redis.call('PEXPIRE', slot_key, lease)
  in_use = in_use + 1
end
local result = {1, -1, in_use}
for i = 1, #out do result[#result + 1] = out[i] end
return result
"""
)

# KEYS: one per adjusted check, then the slot's lease set (when ARGV[4] is 1).
# ARGV: strategy, n, request token, release slot (0/1),
#       then window ms, charged window, reserved cost, real cost for each check.
_SETTLE = (
    _COMMON
    + """
local n, token = tonumber(ARGV[2]), ARGV[3]
for i = 1, n do
  local window = tonumber(ARGV[1 + 4 * i])
  local charged = tonumber(ARGV[2 + 4 * i])
  local reserved = tonumber(ARGV[3 + 4 * i])
  local actual = tonumber(ARGV[4 + 4 * i])
  local delta = actual - reserved
  local key = KEYS[i]
  if strategy == 3 then
    local old = token .. ':' .. reserved
    local score = redis.call('ZSCORE', key, old)
    if score then
      redis.call('ZREM', key, old)
      if actual > 0 then redis.call('ZADD', key, score, token .. ':' .. actual) end
    elseif delta > 0 then
      redis.call('ZADD', key, now, token .. ':' .. delta)
      redis.call('PEXPIRE', key, window)
    end
  elseif delta ~= 0 then
    local v = redis.call('HMGET', key, 'w', 'c', 'p')
    local w = tonumber(v[1])
    if w == charged then
      redis.call('HSET', key, 'c', math.max(0, (tonumber(v[2]) or 0) + delta))
    elseif w == charged + 1 then
      redis.call('HSET', key, 'p', math.max(0, (tonumber(v[3]) or 0) + delta))
    elseif delta > 0 then
      local index, c, p = counter(key, window)
      redis.call('HSET', key, 'w', index, 'c', c + delta, 'p', p)
      redis.call('PEXPIRE', key, 2 * window)
    end
  end
end
if tonumber(ARGV[4]) == 1 then redis.call('ZREM', KEYS[n + 1], token) end
return 1
"""
)

# KEYS: the slot's lease set. ARGV: strategy (unused), lease ms, token.
_RENEW = (
    _COMMON
    + """
local lease = tonumber(ARGV[2])
local renewed = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], lease)
return renewed
"""
)


class RedisEngine(Engine):
    """Counts shared by every worker, on Redis or Redis Cluster.

    ``lease`` holds a ``redis.asyncio`` client (single node or cluster) of the store layer,
    usually shared with the other middlewares on the same URL; every call is bounded by its
    timeout, as the stores' are (:class:`~aimiddleware.stores.clients.RedisCalls`).
    :meth:`aclose` gives the lease back: the client closes with its last user.
    """

    backend: ClassVar[str] = "redis"
    shared: ClassVar[bool] = True

    def __init__(self, lease: RedisLease, *, strategy: str) -> None:
        super().__init__(strategy)
        self._lease = lease
        self._client: Any = lease.client
        self._call = lease.call
        self._acquire = self._client.register_script(_ACQUIRE)
        self._settle = self._client.register_script(_SETTLE)
        self._renew = self._client.register_script(_RENEW)

    async def acquire(self, checks: Sequence[Check], slot: Slot | None, token: str) -> Decision:
        keys = [c.key for c in checks]
        args: list[int | str] = [self._code, len(checks), token, 0, 0]
        if slot is not None:
            keys.append(slot.key)
            args[3], args[4] = slot.limit, max(1, int(slot.lease * 1000))
        for check in checks:
            args += [check.limit, check.window * 1000, check.cost]
        raw = await self._call("acquire", lambda: self._acquire(keys, args))
        values = [int(v) for v in raw]
        outcomes = [
            Outcome(values[i], values[i + 1], values[i + 2], values[i + 3])
            for i in range(3, len(values), 4)
        ]
        return Decision(values[0] == 1, values[1], outcomes, values[2])

    async def settle(
        self,
        adjustments: Sequence[tuple[Check, Outcome, int]],
        slot: Slot | None,
        token: str,
    ) -> None:
        if not adjustments and slot is None:
            return
        keys = [c.key for c, _, _ in adjustments]
        args: list[int | str] = [self._code, len(adjustments), token, 0]
        if slot is not None:
            keys.append(slot.key)
            args[3] = 1
        for check, outcome, actual in adjustments:
            args += [check.window * 1000, outcome.charged_window, check.cost, actual]
        await self._call("settle", lambda: self._settle(keys, args))

    async def renew(self, slot: Slot, token: str) -> None:
        lease = max(1, int(slot.lease * 1000))
        await self._call("renew", lambda: self._renew([slot.key], [self._code, lease, token]))

    async def ping(self) -> None:
        await self._call("ping", lambda: self._client.ping())

    @property
    def client(self) -> Any:
        """The ``redis.asyncio`` client, shared with every middleware on the same URL."""
        return self._client

    async def aclose(self) -> None:
        await self._lease.aclose()
