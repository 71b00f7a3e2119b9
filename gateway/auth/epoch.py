"""Who may come in changed: a counter every process of a deployment watches.

Each process trusts a verified token for `token_cache_s` without the database. When a
token is revoked, a user deactivated or a role changed, the process that did it forgets
at once and bumps a counter in Redis; every other process reads the counter at most every
`every_s` (on the next request after that) and, when it moved, forgets every cached
verification. A revocation thus reaches every gateway within about a second instead of
the cache's 30 s, at the cost of one Redis GET per process per second under load. With
Redis away the caches fall back to their own expiry.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0


class SharedEpoch:
    """A Redis counter of changes to who may come in (see module doc)."""

    def __init__(self, redis: Redis, key: str, every_s: float = CHECK_EVERY_S) -> None:
        self._redis, self._key, self.every_s = redis, key, every_s
        self._seen: object = None
        self._next = 0.0

    async def bump(self) -> None:
        """Say that something changed (every process forgets its cached verifications)."""
        try:  # this process too forgets once more on its next look: harmless
            await self._redis.incr(self._key)
        except (RedisError, OSError) as exc:
            log.warning("auth: could not tell the other processes (%s)", type(exc).__name__)

    async def moved(self) -> bool:
        """True when another process said something changed since this one last looked;
        looks at most every `every_s`."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.every_s
        try:
            value = await self._redis.get(self._key)
        except (RedisError, OSError):
            return False
        moved = value != self._seen
        self._seen = value
        return moved
