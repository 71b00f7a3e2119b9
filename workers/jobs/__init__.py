"""Job kinds: each module's `run(job, runtime, spec)` does the work of one kind.

Inputs are defined and validated once, by the kind's spec in `gateway.jobs.specs`.
"""

from __future__ import annotations

from gateway.core.enums import JobKind
from workers.jobs import anonymize, importing, index, rtstruct, sync
from workers.jobs.base import Runner

RUNNERS: dict[JobKind, Runner] = {
    JobKind.SYNC: sync.run,
    JobKind.ANONYMIZE: anonymize.run,
    JobKind.RTSTRUCT: rtstruct.run,
    JobKind.INDEX: index.run,
    JobKind.IMPORT: importing.run,
}
