"""Job events: one JSON message per change, on Redis pub/sub.

Each event goes to the channel of all jobs, so every gateway process (not only
the one that enqueued) can stream it; each process subscribes once (EventHub).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.jobs.queue import Keys

log = logging.getLogger(__name__)
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
SUBSCRIBE_WAIT_S = 5.0


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
    """Send `event` on the all-jobs channel (each process's EventHub hands it on)."""
    await redis.publish(keys.all_events, event.to_json())


class EventHub:
    """Every job event of a deployment through ONE Redis subscription per process (the
    all-jobs channel), handed in memory to any number of local listeners: a thousand open
    GraphQL subscriptions cost one Redis connection, not a thousand.

    Subscribed before a listener reads anything (no event lost between reading the
    current state and listening). When Redis goes away the hub reconnects with backoff and
    wakes every listener (they re-read the database, the truth). A listener that does not
    keep up loses its oldest wake-ups, never the database's events (`dropped` counts).
    """

    def __init__(self, redis: Redis, channel: str, bound: int = 10_000) -> None:
        self._redis, self._channel, self.bound = redis, channel, bound
        self._listeners: set[HubListener] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.dropped = 0

    def listen(self, job_id: str | None = None, owner: str | None = None) -> HubListener:
        """A listener to every event, or to one job's (use with ``async with``)."""
        return HubListener(self, job_id, owner)

    def open_for(self, owner: str) -> int:
        """How many listeners `owner` holds open now."""
        return sum(1 for listener in self._listeners if listener.owner == owner)

    @property
    def listeners(self) -> int:
        """Listeners open in this process."""
        return len(self._listeners)

    async def _attach(self, listener: HubListener) -> None:
        self._listeners.add(listener)
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(self._ready.wait(), SUBSCRIBE_WAIT_S)
        except TimeoutError:
            self._listeners.discard(listener)
            raise ConnectionError("job events are not available (Redis)") from None

    def _detach(self, listener: HubListener) -> None:
        self._listeners.discard(listener)

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._ready.set()
                backoff = 0.2
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        event = Event.from_json(msg["data"])
                        for listener in list(self._listeners):
                            listener.offer(event)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("job events: Redis subscription lost (%s)", type(exc).__name__)
                self._ready.clear()
                for listener in list(self._listeners):
                    listener.offer(None)  # wake: re-read the database
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def aclose(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None


class HubListener:
    """One consumer of an EventHub: `await listener.next(wait_s)`."""

    def __init__(self, hub: EventHub, job_id: str | None, owner: str | None) -> None:
        self.hub, self.job_id, self.owner = hub, job_id, owner
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=hub.bound)

    async def __aenter__(self) -> HubListener:
        await self.hub._attach(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.hub._detach(self)

    def offer(self, event: Event | None) -> None:
        """Queue `event` when it is one this listener wants (None: a wake-up)."""
        if event is not None and self.job_id is not None and event.job_id != self.job_id:
            return
        if self._queue.full():  # a slow consumer: its oldest item goes
            self._queue.get_nowait()
            self.hub.dropped += 1
        self._queue.put_nowait(event)

    async def next(self, wait_s: float) -> Event | None:
        """The next event, or None after `wait_s` seconds without one (or on a wake-up)."""
        try:
            return await asyncio.wait_for(self._queue.get(), wait_s)
        except TimeoutError:
            return None
