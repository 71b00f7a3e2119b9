"""Fairness: a token bucket per caller on /graphql (429 with Retry-After beyond it), and a
budget of the process's time per caller.

A caller is a user (sessions and OIDC tokens), an API token (each its own bucket), or the
client address when anonymous or in open mode. Buckets live in Redis, shared by every
gateway process of the deployment (`SharedBuckets`: one script takes a token atomically,
refilled by the time elapsed on Redis's clock; a bucket's key expires once it would be
full again), so behind a load balancer a caller has one rate, not one per process. While
Redis fails, each process uses its own buckets (`TokenBuckets`; logged once, retried
every few seconds): a request is never refused because Redis is down. In-process, full
buckets are forgotten when the table grows, so a flood of addresses cannot grow it
without bound.

A 429 is answered after the caller's wait, up to `TARPIT_S`: a client that ignores
`Retry-After` and asks again at once is slowed to its rate instead of being answered
429s as fast as the gateway can send them (each costs a parse and an authentication).

Requests differ in cost by a factor of a thousand, so a rate of requests alone lets one
client with costly requests take the process. The time budget is a `TokenBuckets` of
seconds (`[gateway] time_per_s`, `time_burst_s`): each request is `charge`d the time it
took of this process (`gateway.core.timing.Meter`) once it has run, and a caller in debt
waits until it is `owed` nothing before its next request runs (`TimeShares`: only while
other callers compete for the process). It is kept per process: what it shares out is
that process's time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.auth.principal import Principal

log = logging.getLogger(__name__)

MAX_KEYS = 50_000
REDIS_TIMEOUT_S = 0.5  # slower than this and the request uses this process's bucket
RETRY_REDIS_S = 5.0  # after a failure, Redis is asked again this much later
TARPIT_S = 1.0  # a 429 is answered after its wait, up to this
# KEYS[1]: the bucket (a hash: tokens, at); ARGV: rate per second, burst. Returns the
# seconds to wait (as a string: Redis turns Lua numbers into integers), "0" if taken.
TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""


def caller_key(caller: Principal | None, address: str | None, open_mode: bool) -> str:
    """The bucket of a request."""
    if caller is None or open_mode:
        return f"address:{address or '?'}"
    if caller.token_id is not None:
        return f"token:{caller.token_id}"
    return f"user:{caller.user_id}"


class TokenBuckets:
    """`rate` requests a second per key, up to `burst` at once."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key: (tokens, at)

    @property
    def enabled(self) -> bool:
        """False when the rate is 0 (no limit)."""
        return self.rate > 0

    def take(self, key: str) -> float:
        """Take one token: 0.0 if there was one, else the seconds until there is."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return 0.0
        self._store(key, tokens, now)
        return (1.0 - tokens) / self.rate

    def charge(self, key: str, amount: float) -> None:
        """Take `amount` from `key`'s bucket, into debt if it holds less (a request's cost,
        known once it has run); the debt is at most a burst."""
        if self.enabled and amount > 0:
            now = self.clock()
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate) - amount
            self._store(key, max(-self.burst, tokens), now)

    def owed(self, key: str) -> float:
        """Seconds until `key`'s bucket is out of debt (0.0 if it is not in debt)."""
        if not self.enabled or key not in self._buckets:
            return 0.0
        tokens, at = self._buckets[key]
        return max(0.0, -tokens / self.rate - (self.clock() - at))

    def retry_after(self, wait_s: float) -> int:
        """`Retry-After` in whole seconds (at least 1)."""
        return max(1, math.ceil(wait_s))

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets.pop(key, None)
        self._buckets[key] = (tokens, now)  # most recent last
        if len(self._buckets) > MAX_KEYS:
            self._prune(now)

    def _prune(self, now: float) -> None:
        full = [
            k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst
        ]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) > MAX_KEYS:  # the least recently seen go first
            del self._buckets[next(iter(self._buckets))]


class TimeShares:
    """Each caller's share of this process's time when callers compete for it.

    A caller has at most `max_active` requests served at once (`full`: the next is
    refused), so that many requests sent together cannot take the process before any of
    them is charged. A request is charged (`end`) the time it took when another caller's
    request ran beside it, at its start or its end: a caller alone is never held back,
    however costly its requests (a script at night). A caller in debt waits (`owed`) only
    while another caller is being served.
    """

    def __init__(self, budget: TokenBuckets, max_active: int = 0) -> None:
        self.budget = budget
        self.max_active = max_active  # requests served at once per caller; 0 = no bound
        self._active: dict[str, int] = {}  # requests being served, per caller

    def full(self, key: str) -> bool:
        """Whether `key` already has `max_active` requests being served."""
        return 0 < self.max_active <= self._active.get(key, 0)

    def _others(self, key: str) -> bool:
        return len(self._active) > (1 if key in self._active else 0)

    def owed(self, key: str) -> float:
        """Seconds `key` should wait before its request runs (0.0 when it need not)."""
        return self.budget.owed(key) if self._others(key) else 0.0

    def begin(self, key: str) -> bool:
        """A request of `key` starts; whether another caller's is being served."""
        contended = self._others(key)
        self._active[key] = self._active.get(key, 0) + 1
        return contended

    def end(self, key: str, seconds: float, contended: bool) -> None:
        """`key`'s request took `seconds`; charged if another caller was being served."""
        left = self._active.get(key, 1) - 1
        if left:
            self._active[key] = left
        else:
            self._active.pop(key, None)
        if contended or self._others(key):
            self.budget.charge(key, seconds)


class SharedBuckets:
    """`TokenBuckets` shared by every gateway process through Redis (see the module doc):
    `share()` names the Redis and the deployment's key prefix (`Keys.prefix`); before it,
    and while Redis fails, `local` answers."""

    def __init__(self, local: TokenBuckets) -> None:
        self.local = local
        self._redis: Redis | None = None
        self._take: Any = None
        self._prefix = ""
        self._retry_at = 0.0  # monotonic; while ahead, Redis is not asked
        self._failing = False

    @property
    def enabled(self) -> bool:
        """False when the rate is 0 (no limit)."""
        return self.local.enabled

    def share(self, redis: Redis, prefix: str) -> None:
        """Take tokens from buckets in `redis`, under `{prefix}:rate:`."""
        self._redis, self._prefix = redis, prefix
        self._take = redis.register_script(TAKE)  # EVALSHA, loaded again when unknown

    def key(self, caller: str) -> str:
        """The Redis key of a caller's bucket."""
        return f"{self._prefix}:rate:{caller}"

    async def take(self, caller: str) -> float:
        """Take one token of `caller`'s bucket: 0.0 if there was one, else the seconds
        until there is."""
        if not self.enabled:
            return 0.0
        if self._take is None or time.monotonic() < self._retry_at:
            return self.local.take(caller)
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S):
                wait = await self._take(
                    keys=[self.key(caller)], args=[repr(self.local.rate), repr(self.local.burst)]
                )
        except (RedisError, OSError, TimeoutError) as exc:
            self._retry_at = time.monotonic() + RETRY_REDIS_S
            if not self._failing:
                self._failing = True
                log.warning(
                    "rate limits: Redis failed (%s); each process uses its own buckets "
                    "until it answers",
                    type(exc).__name__,
                )
            return self.local.take(caller)
        if self._failing:
            self._failing = False
            log.info("rate limits: Redis answers again; buckets are shared")
        return float(wait)

    def retry_after(self, wait_s: float) -> int:
        """`Retry-After` in whole seconds (at least 1)."""
        return self.local.retry_after(wait_s)
