"""Job kinds: each has a `validate(input, settings)` and a `run(job, runtime, input)`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.core.settings import Settings
from gateway.runtime import Runtime
from workers.jobs import anonymize, rtstruct, sync
from workers.jobs.base import JobHandle

Validate = Callable[[dict[str, Any], Settings], None]
Run = Callable[[JobHandle, Runtime, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class JobKind:
    """What a kind of job needs: checking an input, and running it."""

    validate: Validate
    run: Run


KINDS: dict[str, JobKind] = {
    "SYNC": JobKind(sync.validate, sync.run),
    "ANONYMIZE": JobKind(anonymize.validate, anonymize.run),
    "RTSTRUCT": JobKind(rtstruct.validate, rtstruct.run),
}
