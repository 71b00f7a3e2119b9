"""Value kinds shared by every layer: one StrEnum each, exposed to GraphQL by `resolvers`."""

from __future__ import annotations

from enum import StrEnum


class JobKind(StrEnum):
    """What a job does; each kind but IMPORT has a spec in `gateway.jobs.specs`."""

    SYNC = "SYNC"
    ANONYMIZE = "ANONYMIZE"
    RTSTRUCT = "RTSTRUCT"
    IMPORT = "IMPORT"


class JobStatus(StrEnum):
    """Where a job is in its life; the DB row holds it."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """True once the job will not change again (unless retried)."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class ConflictStrategy(StrEnum):
    """What a sync does with instances both archives hold but that disagree."""

    REPORT_ONLY = "REPORT_ONLY"
    SKIP = "SKIP"
    SOURCE_WINS = "SOURCE_WINS"


class SourceRole(StrEnum):
    """What the gateway may use a source for."""

    QUERY = "query"
    RETRIEVE = "retrieve"
    STORE = "store"
    RESEARCH = "research"
