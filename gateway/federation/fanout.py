"""Concurrent calls to several sources, each bounded by its own deadline.

A failing or hanging source never delays or breaks the others: its outcome
says ERROR or TIMEOUT and carries no value. Within one request, a source that
timed out or could not be reached is not asked again (`Strikes`): a request
walking down several levels costs a hanging archive's timeout once, not once
per level.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gateway.core.errors import SourceError, SourceTimeout, SourceUnavailable
from gateway.core.timing import elapsed_ms
from gateway.sources.base import PacsSource

T = TypeVar("T")

OK, ERROR, TIMEOUT, SKIPPED = "OK", "ERROR", "TIMEOUT", "SKIPPED"


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """How one source answered one call."""

    source: str
    status: str
    latency_ms: float | None = None
    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the source answered."""
        return self.status == OK


@dataclass(slots=True)
class Strikes:
    """Sources that timed out or were unreachable earlier in one request."""

    failed: dict[str, Outcome[Any]] = field(default_factory=dict)

    def again(self, source: str) -> Outcome[Any] | None:
        """The outcome to report instead of calling `source` again, if it failed before."""
        first = self.failed.get(source)
        if first is None:
            return None
        return Outcome(source, first.status, 0.0, error=f"not asked again: {first.error}")


def _message(exc: SourceError) -> str:
    return f"{type(exc).__name__}: {exc.detail}"


GUARD_MARGIN = 0.05  # of the deadline: well inside the "timeout + 10%" promise


async def call_one(
    source: PacsSource,
    call: Callable[[PacsSource], Awaitable[T]],
    deadline_s: float | None = None,
    strikes: Strikes | None = None,
) -> Outcome[T]:
    """Run `call(source)` within `deadline_s` (default: the source's timeout)."""
    if strikes is not None and (earlier := strikes.again(source.id)) is not None:
        return earlier
    deadline = source.config.timeout_s if deadline_s is None else deadline_s
    start = time.perf_counter()
    sticky = True
    try:
        # the source's own guard times out first (and counts it); this bounds composite calls
        value = await asyncio.wait_for(call(source), deadline * (1 + GUARD_MARGIN))
    except TimeoutError:
        out: Outcome[T] = Outcome(
            source.id, TIMEOUT, elapsed_ms(start), error=f"no answer within {deadline:g}s"
        )
    except SourceTimeout as exc:
        out = Outcome(source.id, TIMEOUT, elapsed_ms(start), error=_message(exc))
    except SourceError as exc:
        out = Outcome(source.id, ERROR, elapsed_ms(start), error=_message(exc))
        sticky = isinstance(exc, SourceUnavailable)
    else:
        return Outcome(source.id, OK, elapsed_ms(start), value=value)
    if strikes is not None and sticky:
        strikes.failed.setdefault(source.id, out)
    return out


async def fan_out(
    sources: Mapping[str, PacsSource],
    call: Callable[[PacsSource], Awaitable[T]],
    only: Sequence[str] | None = None,
    skipped: Sequence[str] = (),
    strikes: Strikes | None = None,
) -> list[Outcome[T]]:
    """Call every source in `only` (default: all) concurrently; `skipped` are listed as SKIPPED."""
    ids = [i for i in (only if only is not None else list(sources)) if i in sources]
    results = await asyncio.gather(*(call_one(sources[i], call, strikes=strikes) for i in ids))
    skip: list[Outcome[T]] = [Outcome(i, SKIPPED) for i in skipped]
    return [*results, *skip]
