"""Timing helpers shared by every layer."""

from __future__ import annotations

import time
import types
from collections.abc import Coroutine, Generator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")


def elapsed_ms(start: float) -> float:
    """Milliseconds since `start` (a `time.perf_counter()` reading), to 0.01 ms."""
    return round((time.perf_counter() - start) * 1000, 2)


def as_utc(at: datetime) -> datetime:
    """`at` in UTC; SQLite hands back naive datetimes, and every stored time is UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class Meter:
    """Seconds of this process's time one piece of work (a request) took: the steps its
    coroutine ran on the event loop (`metered`), plus what it had done in threads for it
    (`charge`). Waiting (I/O, sleeps, other tasks) costs nothing."""

    def __init__(self) -> None:
        self.seconds = 0.0


METER: ContextVar[Meter | None] = ContextVar("meter", default=None)


def charge(seconds: float) -> None:
    """Add `seconds` of work done elsewhere (in a thread) to the current meter, if any."""
    meter = METER.get()
    if meter is not None:
        meter.seconds += seconds


@types.coroutine
def metered(coro: Coroutine[Any, Any, T], meter: Meter) -> Generator[Any, Any, T]:
    """Await `coro`, adding the time of each of its steps on the loop to `meter`."""
    step: Any = coro.send
    value: Any = None
    while True:
        start = time.perf_counter()
        try:
            yielded = step(value)
        except StopIteration as stop:
            return stop.value
        finally:
            meter.seconds += time.perf_counter() - start
        try:
            value, step = (yield yielded), coro.send
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # a cancellation, thrown in where the coroutine waits
            value, step = exc, coro.throw
