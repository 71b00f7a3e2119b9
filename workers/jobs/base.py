"""What every job function gets: a handle to report progress and to stop when asked.

A job function has this shape (one module per kind under `workers/jobs/`)::

    async def run(job: JobHandle, runtime: Runtime, spec: SyncSpec) -> dict[str, Any]

`spec` is the kind's typed input (`gateway.jobs.specs`), parsed from the job row by the
runner; the returned dict is the job's `result` (JSON). Inside, a job:

- calls `await job.progress(fraction, phase, message)` as it goes (0.0..1.0;
  cheap to call often, events are coalesced);
- calls `await job.checkpoint()` at every safe point: it raises `JobCancelled`
  when cancelling was requested, so nothing half-written is left behind;
- raises `JobError` (or `InvalidInput`) for failures a retry will not fix; a
  `SourceUnavailable`/`SourceTimeout` is transient and the job is retried;
- is idempotent: it may run more than once for the same job id (a worker killed
  mid-job, arq re-running it), so it skips what an earlier attempt finished.

Messages never contain patient data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gateway.runtime import Runtime


class JobHandle(Protocol):
    """The running job, as a job function sees it."""

    @property
    def id(self) -> str:
        """The job's id (deterministic, also the arq job id)."""
        ...

    @property
    def attempt(self) -> int:
        """1 on the first run, more when retried or re-run after a crash."""
        ...

    async def progress(
        self, fraction: float, phase: str | None = None, message: str | None = None
    ) -> None:
        """Record and publish progress."""
        ...

    async def checkpoint(self) -> None:
        """A safe point: raise `JobCancelled` when cancelling was requested."""
        ...


class RecordingHandle:
    """A `JobHandle` that keeps every event in memory: for tests and the CLI."""

    def __init__(self, job_id: str = "local", cancel_after: int | None = None) -> None:
        self._id = job_id
        self.events: list[tuple[float, str | None, str | None]] = []
        self._cancel_after = cancel_after
        self._checkpoints = 0

    @property
    def id(self) -> str:
        """The job id given at construction."""
        return self._id

    @property
    def attempt(self) -> int:
        """Always 1."""
        return 1

    async def progress(
        self, fraction: float, phase: str | None = None, message: str | None = None
    ) -> None:
        """Append the event."""
        self.events.append((fraction, phase, message))

    async def checkpoint(self) -> None:
        """Raise `JobCancelled` after `cancel_after` checkpoints, if set."""
        from gateway.core.errors import JobCancelled

        self._checkpoints += 1
        if self._cancel_after is not None and self._checkpoints > self._cancel_after:
            raise JobCancelled("cancelled")


# a job kind's run function: (handle, runtime, its parsed spec) -> the job's result
Runner = Callable[[JobHandle, Runtime, Any], Awaitable[dict[str, Any]]]
