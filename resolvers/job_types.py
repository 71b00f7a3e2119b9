"""GraphQL types of jobs, their events, inputs, and RT-STRUCT results."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from gateway.auth.policy import may_see_job
from gateway.core.enums import ConflictStrategy, JobKind, JobStatus
from gateway.db.models import Job as JobRow
from gateway.jobs.events import Event
from gateway.jobs.specs.base import drop_none
from resolvers.common import PageInfo

INPUT_BYTES = 4096  # a job's input larger than this (as JSON) is answered as a summary
SUMMARY_ITEMS = 3  # the first items of a list kept in a summary

# an ANONYMIZE result's fields that name the pseudonyms: admins only (the pseudonym link)
PSEUDONYM_FIELDS = ("anonymizedPatientId", "anonymizedStudyInstanceUid")

# the value kinds are defined once, in gateway.core.enums; here they become GraphQL enums
for _enum in (JobKind, JobStatus, ConflictStrategy):
    strawberry.enum(_enum)


@strawberry.type
class JobEvent:
    """One change of a job's state."""

    job_id: strawberry.ID
    at: datetime
    status: JobStatus
    progress: float
    phase: str | None
    message: str | None

    @classmethod
    def of(cls, ev: Event) -> JobEvent:
        """From a recorded or published event."""
        return cls(
            job_id=strawberry.ID(ev.job_id),
            at=ev.at,
            status=JobStatus(ev.status),
            progress=ev.progress,
            phase=ev.phase,
            message=ev.message,
        )


@strawberry.type
class Job:
    """A unit of long work; its state comes from the job table."""

    row: strawberry.Private[JobRow]
    # seen by a recipient of its de-identified study: pseudonyms yes, input never
    recipient: strawberry.Private[bool] = False

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def kind(self) -> JobKind:
        return JobKind(self.row.kind)

    @strawberry.field
    def status(self) -> JobStatus:
        return JobStatus(self.row.status)

    @strawberry.field
    def progress(self) -> float:
        return float(self.row.progress or 0.0)

    @strawberry.field
    def phase(self) -> str | None:
        return self.row.phase

    @strawberry.field
    def message(self) -> str | None:
        return self.row.message

    @strawberry.field
    def attempts(self) -> int:
        return int(self.row.attempts or 0)

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def started_at(self) -> datetime | None:
        return self.row.started_at

    @strawberry.field
    def finished_at(self) -> datetime | None:
        return self.row.finished_at

    @strawberry.field
    def input(self, info: strawberry.Info) -> JSON:
        # to the job's owner and admins only (empty to others); a finished ANONYMIZE job
        # keeps its study UID only as a keyed hash (workers.jobs.anonymize)
        caller = info.context.caller
        if self.recipient or caller is None or not may_see_job(caller, self.row.owner):
            return JSON({})
        return JSON(input_summary(dict(self.row.input or {})))

    @strawberry.field
    def result(self, info: strawberry.Info) -> JSON | None:
        # an ANONYMIZE job's pseudonyms are shown to admins and its recipients only
        if self.row.result is None:
            return None
        result = dict(self.row.result)
        caller = info.context.caller
        shown_to = self.recipient or (caller is not None and caller.is_admin)
        if self.row.kind == JobKind.ANONYMIZE and not shown_to:
            # the owner knows the original study: with its pseudonym they would hold the link
            for name in PSEUDONYM_FIELDS:
                result.pop(name, None)
        return JSON(result)

    @strawberry.field
    def error(self) -> str | None:
        return self.row.error

    @strawberry.field
    def owner(self) -> str | None:
        """User id of who submitted it (none for the scheduler's jobs)."""
        return self.row.owner

    @strawberry.field
    def requested_by(self) -> str:
        """Who asked for the job."""
        return self.row.requested_by

    @strawberry.field
    async def events(self, info: strawberry.Info) -> list[JobEvent]:
        return [JobEvent.of(ev) for ev in await info.context.job_events.load(self.row.id)]


@strawberry.type
class JobEdge:
    node: Job
    cursor: str


@strawberry.type
class JobConnection:
    edges: list[JobEdge]
    page_info: PageInfo
    total_count: int


@strawberry.input
class SyncInput:
    from_: strawberry.ID = strawberry.field(name="from")
    to: strawberry.ID
    study_instance_uids: list[str] | None = None
    patient_id: str | None = None
    all: bool | None = None
    dry_run: bool | None = False
    verify: bool | None = True
    conflict_strategy: ConflictStrategy | None = ConflictStrategy.REPORT_ONLY

    def as_input(self) -> dict[str, Any]:
        """The input as given, for the kind's spec (`gateway.jobs.specs`) to validate."""
        return drop_none(
            {
                "from": str(self.from_),
                "to": str(self.to),
                "studyInstanceUids": self.study_instance_uids,
                "patientId": self.patient_id,
                "all": self.all,
                "dryRun": self.dry_run,
                "verify": self.verify,
                "conflictStrategy": self.conflict_strategy,
            }
        )


@strawberry.input
class AnonymizeInput:
    source: strawberry.ID
    study_instance_uid: str
    destination: strawberry.ID
    project: str | None = None
    options: list[str] | None = None
    keep_mapping: bool | None = False
    allow_clinical_destination: bool | None = strawberry.field(
        default=False,
        description="Admins only, audited: store into an archive without role RESEARCH.",
    )
    recipients: list[str] | None = strawberry.field(
        default=None,
        description=(
            "Usernames of researchers who may see the job and its pseudonyms (never its "
            "input); each must be an active user without a clinical role."
        ),
    )

    def as_input(self) -> dict[str, Any]:
        """The input as given, for the kind's spec (`gateway.jobs.specs`) to validate."""
        return drop_none(
            {
                "source": str(self.source),
                "studyInstanceUid": self.study_instance_uid,
                "destination": str(self.destination),
                "project": self.project,
                "options": self.options,
                "keepMapping": self.keep_mapping,
                "allowClinicalDestination": self.allow_clinical_destination,
                "recipients": self.recipients,
            }
        )


@strawberry.input
class RtStructInput:
    source: strawberry.ID
    study_instance_uid: str
    series_instance_uid: str | None = None
    full_grid_masks: bool | None = strawberry.field(
        default=False,
        description="NIfTI masks over the whole CT grid; default: each ROI's bounding box "
        "(same physical space: origin, spacing and direction of the CT).",
    )

    def as_input(self) -> dict[str, Any]:
        """The input as given, for the kind's spec (`gateway.jobs.specs`) to validate."""
        return drop_none(
            {
                "source": str(self.source),
                "studyInstanceUid": self.study_instance_uid,
                "seriesInstanceUid": self.series_instance_uid,
                "fullGridMasks": self.full_grid_masks,
            }
        )


@strawberry.type
class Roi:
    number: int
    name: str
    volume_cc: float
    surface_cm2: float
    centroid_mm: list[float]
    slice_count: int
    mask_url: str | None = None
    mesh_url: str | None = None
    full_grid_mask_url: str | None = strawberry.field(
        default=None,
        description="NIfTI over the whole CT grid (for viewers that need the CT's exact "
        "grid); made on its first download when maskUrl is the bounding box only.",
    )
    planimetric_volume_cc: float | None = None
    volume_mismatch: bool | None = None
    mean_value: float | None = None
    min_value: float | None = None
    max_value: float | None = None


@strawberry.type
class RtStructResult:
    job_id: strawberry.ID
    study_instance_uid: str
    series_instance_uid: str
    referenced_series_instance_uid: str | None
    rois: list[Roi]
    processing_seconds: float
    summary_url: str | None
    warnings: list[str]


def input_summary(value: dict[str, Any], limit: int = INPUT_BYTES) -> dict[str, Any]:
    """A job's input as the API answers it: whole up to `limit` bytes of JSON; beyond, each
    list is cut to its first items with its length (`{"count": n, "first": [...]}`), long
    strings are cut, and `"summarized": true` with the whole input's size is added."""
    size = len(json.dumps(value, separators=(",", ":")))
    if size <= limit:
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, list):
            out[key] = {"count": len(item), "first": item[:SUMMARY_ITEMS]}
        elif isinstance(item, str) and len(item) > 256:
            out[key] = item[:256] + "…"
        elif isinstance(item, dict) and len(json.dumps(item)) > 256:
            out[key] = {"keys": sorted(item)[:20]}
        else:
            out[key] = item
    return {**out, "summarized": True, "bytes": size}
