"""Timing helpers shared by every layer."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def elapsed_ms(start: float) -> float:
    """Milliseconds since `start` (a `time.perf_counter()` reading), to 0.01 ms."""
    return round((time.perf_counter() - start) * 1000, 2)


def as_utc(at: datetime) -> datetime:
    """`at` in UTC; SQLite hands back naive datetimes, and every stored time is UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
