"""Job events: one JSON message per change, on Redis pub/sub.

Each event goes to the job's own channel and to the channel of all jobs, so
every gateway process (not only the one that enqueued) can stream it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from gateway.jobs.queue import Keys

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded change of a job's state; `seq` numbers a job's events 1, 2, 3, ..."""

    job_id: str
    kind: str
    seq: int
    at: datetime
    status: str
    progress: float
    phase: str | None = None
    message: str | None = None

    @property
    def terminal(self) -> bool:
        """True for the last event of a run."""
        return self.status in TERMINAL

    def to_json(self) -> str:
        """The wire form."""
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        """Parse the wire form."""
        data: dict[str, Any] = json.loads(raw)
        data["at"] = datetime.fromisoformat(data["at"])
        return cls(**data)


async def publish(redis: Redis, keys: Keys, event: Event) -> None:
    """Send `event` on its job's channel and on the all-jobs channel."""
    raw = event.to_json()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.publish(keys.job_events(event.job_id), raw)
        pipe.publish(keys.all_events, raw)
        await pipe.execute()


class Listener:
    """A pub/sub subscription to one channel, open before anything is read.

    Use as ``async with Listener(redis, channel) as events: await events.next(timeout)``.
    """

    def __init__(self, redis: Redis, channel: str) -> None:
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._channel = channel

    async def __aenter__(self) -> Listener:
        await self._pubsub.subscribe(self._channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._pubsub.aclose()

    async def next(self, wait_s: float) -> Event | None:
        """The next event, or None after `wait_s` seconds without one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (left := deadline - loop.time()) > 0:
            msg = await self._pubsub.get_message(timeout=min(left, 1.0))
            if msg is not None and msg.get("type") == "message":
                return Event.from_json(msg["data"])
        return None
