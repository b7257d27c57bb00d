"""The Lua scripts: each backend call is one atomic script on Redis's own clock (``TIME``).

Floats cross the Lua boundary as text (``%.17g``, exact for a double): Redis
turns a Lua number into an integer reply. Every script refreshes the TTL of
what it writes (``keep_ms``, at least long enough for the state to matter),
so the keys of an abandoned fleet go away.

:class:`LuaScript` runs a script by ``EVALSHA`` and, when the store answers
``NOSCRIPT`` (a restarted or flushed Redis lost its script cache), by
``EVAL`` with the source, which loads it again: one extra round trip, once.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis

_PRELUDE = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.17g', x) end
"""

_LEASES = """
local slots, leases = KEYS[1], KEYS[2]
local t = now()
local function purge()
  local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', fmt(t))
  for _, member in ipairs(expired) do redis.call('HDEL', slots, member) end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', leases, '-inf', fmt(t)) end
end
local function held_by(member) return tonumber(redis.call('HGET', slots, member) or '0') end
local function store(member, held, expires)
  if held > 0 then
    redis.call('HSET', slots, member, held)
    if expires then redis.call('ZADD', leases, fmt(expires), member) end
  else
    redis.call('HDEL', slots, member)
    redis.call('ZREM', leases, member)
  end
end
local function keep(keep_ms)
  local last = redis.call('ZRANGE', leases, -1, -1, 'WITHSCORES')
  if last[2] then
    local ms = math.max(keep_ms, math.floor((tonumber(last[2]) - t) * 1000) + 1000)
    redis.call('PEXPIRE', slots, ms)
    redis.call('PEXPIRE', leases, ms)
  end
end
purge()
"""

TAKE_TOKENS = (
    _PRELUDE
    + """
-- KEYS: rate. ARGV: count, rate, burst, keep_ms. Returns {granted, retry_after}.
local count, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = now()
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = burst
if state[1] and state[2] then
  local elapsed = math.max(0, t - tonumber(state[2]))
  tokens = math.min(burst, tonumber(state[1]) + elapsed * rate)
end
local granted = math.max(0, math.min(count, math.floor(tokens)))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', fmt(tokens), 'at', fmt(t))
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[4]), math.floor(burst / rate * 1000) + 1000))
local retry_after = 0
if granted < count then retry_after = math.max(0, (1 - tokens) / rate) end
return {granted, fmt(retry_after)}
"""
)

LEASE_SLOTS = (
    _PRELUDE
    + _LEASES
    + """
-- KEYS: slots, leases. ARGV: member, count, limit, ttl, keep_ms. Returns the slots member holds.
local member, count, limit, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local held = held_by(member)
local total = 0
for _, n in ipairs(redis.call('HVALS', slots)) do total = total + tonumber(n) end
local others = total - held
local free = math.max(0, limit - others - held)
held = math.max(0, math.min(held + math.min(count, free), limit - others))
store(member, held, t + ttl)
keep(tonumber(ARGV[5]))
return held
"""
)

RENEW_SLOTS = (
    _PRELUDE
    + _LEASES
    + """
-- KEYS: slots, leases. ARGV: member, ttl, keep_ms. Returns the slots member holds.
local member = ARGV[1]
local held = held_by(member)
store(member, held, t + tonumber(ARGV[2]))
keep(tonumber(ARGV[3]))
return held
"""
)

RELEASE_SLOTS = (
    _PRELUDE
    + _LEASES
    + """
-- KEYS: slots, leases. ARGV: member, count. Returns the slots member still holds (its lease's expiry unchanged).
local member = ARGV[1]
local held = math.max(0, held_by(member) - tonumber(ARGV[2]))
store(member, held, nil)
return held
"""
)

PROPOSE_LIMIT = (
    _PRELUDE
    + """
-- KEYS: limit. ARGV: version, rate, limit, ceiling, keep_ms ('' is None). Returns the stored record.
-- A store with nothing stored (new, or restarted empty) takes any proposal: the fleet rebuilds its state.
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if stored == 0 or tonumber(ARGV[1]) == stored then
  redis.call('HSET', KEYS[1], 'rate', ARGV[2], 'limit', ARGV[3], 'ceiling', ARGV[4],
             'version', stored + 1, 'updated_at', fmt(now()))
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return redis.call('HMGET', KEYS[1], 'rate', 'limit', 'ceiling', 'version', 'updated_at')
"""
)

TAKE_RETRY = """
-- KEYS: retry. ARGV: cost, capacity, keep_ms. Returns 1 if taken, 0 (taking nothing) if too few.
local cost, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens = math.min(capacity, tonumber(redis.call('GET', KEYS[1]) or ARGV[2]))
local taken = 0
if tokens >= cost then
  tokens = tokens - cost
  taken = 1
end
redis.call('SET', KEYS[1], string.format('%d', tokens), 'PX', tonumber(ARGV[3]))
return taken
"""

GIVE_RETRY = """
-- KEYS: retry. ARGV: amount, capacity, keep_ms.
local capacity = tonumber(ARGV[2])
local tokens = tonumber(redis.call('GET', KEYS[1]) or ARGV[2])
tokens = math.min(capacity, tokens + math.max(0, tonumber(ARGV[1])))
redis.call('SET', KEYS[1], string.format('%d', tokens), 'PX', tonumber(ARGV[3]))
return 0
"""


class LuaScript:
    """One script: its source and SHA1; :meth:`run` is ``EVALSHA``, then ``EVAL`` once if the store lost it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    def run(self, client: redis.Redis, keys: tuple[str, ...], args: tuple[str | int | float, ...]) -> Any:
        """The script's reply; redis-py errors propagate (the backend maps them)."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)
