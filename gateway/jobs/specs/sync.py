"""SYNC: copy what one archive holds and another lacks, then verify."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.core.enums import ConflictStrategy, JobKind, SourceRole
from gateway.core.errors import InvalidInput, shown
from gateway.core.settings import Settings
from gateway.core.uids import is_uid
from gateway.jobs.specs.base import drop_none, flag, source_of

MAX_STUDY_UIDS = 10_000  # UIDs one job may name: its input stays small
LO_CHARS = 64  # a Long String (LO) value, as PatientID


@dataclass(frozen=True, slots=True)
class SyncSpec:
    """From `source` to `destination`: the studies named by exactly one of UIDs, patient, all.

    `periodic` (set by the scheduler only) limits a run to what changed since the last one.
    """

    kind: ClassVar[JobKind] = JobKind.SYNC

    source: str
    destination: str
    study_uids: tuple[str, ...] = ()
    patient_id: str | None = None
    all: bool = False
    dry_run: bool = False
    verify: bool = True
    conflict_strategy: ConflictStrategy = ConflictStrategy.REPORT_ONLY
    periodic: bool = False

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources this job reads or writes."""
        return (self.source, self.destination)

    @classmethod
    def parse(cls, data: Mapping[str, Any], settings: Settings) -> SyncSpec:
        """Validate a SYNC input."""
        src = source_of(data, "from", settings).id
        dst = source_of(data, "to", settings).id
        if src == dst:
            raise InvalidInput("from and to must be different sources")
        if not settings.source(dst).has_role(SourceRole.STORE):
            raise InvalidInput(f"to: source {shown(dst)} does not have the store role")
        chosen = [k for k in ("studyInstanceUids", "patientId", "all") if data.get(k)]
        if len(chosen) != 1:
            raise InvalidInput("give exactly one of studyInstanceUids, patientId, all")
        uids = data.get("studyInstanceUids") or []
        if not isinstance(uids, list | tuple):
            raise InvalidInput("studyInstanceUids: not valid UIDs")
        if len(uids) > MAX_STUDY_UIDS:
            raise InvalidInput(
                f"studyInstanceUids: at most {MAX_STUDY_UIDS} per job "
                "(sync more by patientId, all, or several jobs)"
            )
        if not all(is_uid(u) for u in uids):
            raise InvalidInput("studyInstanceUids: not valid UIDs")
        patient = data.get("patientId")
        if patient is not None and (not isinstance(patient, str) or len(patient) > LO_CHARS):
            raise InvalidInput(f"patientId: a string of at most {LO_CHARS} characters")
        strategy = data.get("conflictStrategy") or ConflictStrategy.REPORT_ONLY
        if strategy not in ConflictStrategy.__members__:
            raise InvalidInput(f"conflictStrategy: one of {', '.join(ConflictStrategy)}")
        return cls(
            source=src,
            destination=dst,
            study_uids=tuple(uids),
            patient_id=patient or None,
            all=flag(data, "all", False),
            dry_run=flag(data, "dryRun", False),
            verify=flag(data, "verify", True),
            conflict_strategy=ConflictStrategy(strategy),
            periodic=flag(data, "periodic", False),
        )

    def as_input(self) -> dict[str, Any]:
        """The stored input: what was chosen, the flags, the strategy."""
        return drop_none(
            {
                "from": self.source,
                "to": self.destination,
                "studyInstanceUids": list(self.study_uids) or None,
                "patientId": self.patient_id,
                "all": self.all or None,
                "dryRun": self.dry_run,
                "verify": self.verify,
                "conflictStrategy": self.conflict_strategy.value,
                "periodic": self.periodic or None,
            }
        )
