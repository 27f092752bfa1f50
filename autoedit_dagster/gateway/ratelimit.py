"""The per-client rate limit: a sliding log in Redis, shared by every gateway replica on that Redis."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

# A sliding log per client: the timestamps (Redis' clock, ms) of the requests let through in the
# last window. Atomic, so concurrent replicas never let more than `limit` through.
SLIDING_WINDOW_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window - now}
"""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: float  # seconds; 0 when allowed


class RateLimiter:
    """`limit` requests per `window_seconds` per client, counted in Redis."""

    def __init__(self, client: aioredis.Redis, limit: int, window_seconds: int, prefix: str) -> None:
        self.limit = limit
        self.window_ms = window_seconds * 1000
        self.prefix = prefix
        self._script = client.register_script(SLIDING_WINDOW_LUA)

    async def hit(self, client_id: str) -> RateDecision:
        allowed, remaining, retry_ms = await self._script(
            keys=[self.prefix + client_id], args=[self.limit, self.window_ms, uuid.uuid4().hex[:12]]
        )
        return RateDecision(bool(allowed), self.limit, int(remaining), max(0, int(retry_ms)) / 1000)
