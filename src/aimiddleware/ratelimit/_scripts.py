"""The Redis engine's Lua scripts: acquire, settle and renew, one round trip each.

Every key of one script carries the same hash tag (one Redis Cluster slot). Time is the
server's (``TIME``), so workers with skewed clocks agree on windows and on calendar periods.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACQUIRE", "PERIOD", "RENEW", "SETTLE"]

PERIOD: Final = """
-- the UTC day (code 1) or month (code 2) holding ms: index, start ms, end ms (a month's
-- index is year * 12 + month - 1; days to dates by H. Hinnant's civil calendar algorithm)
local DAY = 86400000
local function month_start(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m + 9
  if m > 2 then mp = m - 3 end
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100)
    + math.floor((153 * mp + 2) / 5)
  return (era * 146097 + doe - 719468) * DAY
end
local function period(ms, code)
  local days = math.floor(ms / DAY)
  if code == 1 then return days, days * DAY, (days + 1) * DAY end
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  local ny, nm = y, m + 1
  if nm > 12 then ny, nm = y + 1, 1 end
  return y * 12 + m - 1, month_start(y, m), month_start(ny, nm)
end
"""

# Shared by the scripts: a counter window is a hash {w: window index, c: current count,
# p: previous window's count}; the sliding window counter weighs p by the share of the
# previous window still inside the sliding window, exactly as limits does (floor).
COMMON: Final = (
    """
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
"""
    + PERIOD
    + """-- a budget's record {w: period index, c: total, a: alerts reported} in the period now
local function budget(key, code)
  local index, start, stop = period(now, code)
  local v = redis.call('HMGET', key, 'w', 'c')
  local c = 0
  if tonumber(v[1]) == index then c = tonumber(v[2]) or 0 end
  return index, c, start, stop
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
)

# KEYS: one per window check, then the slot's lease set (when ARGV[4] > 0).
# ARGV: strategy, n checks, request token, slot limit (0: none), lease ms,
#       then limit, window ms, cost, period (0: the strategy's window) for each check.
# Returns: allowed (0/1), failed position (0-based; n for the slot; -1), slots in use,
#          then remaining, reset ms, retry ms, charged window per check.
ACQUIRE: Final = (
    COMMON
    + """
local n, token = tonumber(ARGV[2]), ARGV[3]
local slot_limit, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
local failed = -1
local out = {}
local staged = {}
local stops = {}
for i = 1, n do
  local limit = tonumber(ARGV[2 + 4 * i])
  local window = tonumber(ARGV[3 + 4 * i])
  local cost = tonumber(ARGV[4 + 4 * i])
  local code = tonumber(ARGV[5 + 4 * i])
  local used, reset, retry, index
  if code > 0 then
    local start, stop
    index, used, start, stop = budget(KEYS[i], code)
    reset = stop - now
    retry = reset
    staged[i] = {index, used, 0}
    stops[i] = stop
  elseif strategy == 3 then
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
  if used + cost <= limit and code > 0 then retry = 0 end
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
  local window = tonumber(ARGV[3 + 4 * i])
  local cost = tonumber(ARGV[4 + 4 * i])
  if stops[i] then
    local s = staged[i]
    if s[2] == 0 then redis.call('HSET', KEYS[i], 'w', s[1], 'a', 0) end
    redis.call('HSET', KEYS[i], 'c', s[2] + cost)
    redis.call('PEXPIREAT', KEYS[i], stops[i] + DAY)
  elseif strategy == 3 then
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
# ARGV: strategy, n, request token, release slot (0/1), number of alert thresholds k,
#       the k thresholds (fractions, ascending),
#       then window ms, charged window, reserved cost, real cost, period, limit per check.
# Returns, per check, the index (0-based) of the highest alert threshold its budget total
# reached for the first time this period, or -1.
SETTLE: Final = (
    COMMON
    + """
local n, token = tonumber(ARGV[2]), ARGV[3]
local k = tonumber(ARGV[5])
local base = 5 + k
local crossed = {}
for i = 1, n do
  local at = base + 6 * (i - 1)
  local window = tonumber(ARGV[at + 1])
  local charged = tonumber(ARGV[at + 2])
  local reserved = tonumber(ARGV[at + 3])
  local actual = tonumber(ARGV[at + 4])
  local code = tonumber(ARGV[at + 5])
  local delta = actual - reserved
  local key = KEYS[i]
  crossed[i] = -1
  if code > 0 then
    -- a refund after the period ended goes nowhere; a surcharge goes to the period now
    local v = redis.call('HMGET', key, 'w', 'c', 'a')
    local total, alerted = nil, tonumber(v[3]) or 0
    if tonumber(v[1]) == charged then
      total = math.max(0, (tonumber(v[2]) or 0) + delta)
      redis.call('HSET', key, 'c', total)
    elseif delta > 0 then
      local index, c, start, stop = budget(key, code)
      if c == 0 then alerted = 0 end
      total = c + delta
      redis.call('HSET', key, 'w', index, 'c', total, 'a', alerted)
      redis.call('PEXPIREAT', key, stop + DAY)
    end
    if total and k > 0 then
      local limit = tonumber(ARGV[at + 6])
      local reached = 0
      for j = 1, k do
        if total >= math.floor(limit * tonumber(ARGV[5 + j]) + 0.5) then reached = reached + 1 end
      end
      if reached > alerted then
        redis.call('HSET', key, 'a', reached)
        crossed[i] = reached - 1
      end
    end
  elseif strategy == 3 then
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
return crossed
"""
)

# KEYS: the slot's lease set. ARGV: strategy (unused), lease ms, token.
RENEW: Final = (
    COMMON
    + """
local lease = tonumber(ARGV[2])
local renewed = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], lease)
return renewed
"""
)
