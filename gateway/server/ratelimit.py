"""Fairness: a token bucket per caller on /graphql (429 with Retry-After beyond it).

A caller is a user (sessions and OIDC tokens), an API token (each its own bucket), or the
client address when anonymous or in open mode. Buckets live in this process: behind a
load balancer each gateway applies the rate on its own. Full buckets are forgotten when
the table grows, so a flood of addresses cannot grow it without bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from gateway.auth.principal import Principal

MAX_KEYS = 50_000


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
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
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
