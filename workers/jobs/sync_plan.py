"""Pure planning of a sync: what is missing where, and which instances disagree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.core.enums import ConflictStrategy
from gateway.federation import merge
from gateway.sources.base import InstanceRecord, StudyRecord

# the federated view's study attributes, less those that differ without a conflict:
# modalities (an archive lacking a series) and study time (precision varies by archive)
STUDY_FIELDS = tuple(f for f in merge.STUDY_FIELDS if f not in ("study_time", "modalities"))
INSTANCE_FIELDS = ("series_uid", "sop_class_uid", "instance_number")


@dataclass(frozen=True, slots=True)
class StudyPlan:
    """What to do for one study."""

    study_uid: str
    source_count: int
    missing: tuple[InstanceRecord, ...]
    conflicting: tuple[InstanceRecord, ...] = ()
    conflict_fields: tuple[str, ...] = ()
    skipped: bool = False
    resend: bool = False
    whole_series: tuple[str, ...] = ()

    @property
    def to_send(self) -> tuple[InstanceRecord, ...]:
        """Instances to transfer (missing, plus conflicting ones when the source wins)."""
        if self.skipped:
            return ()
        return self.missing + (self.conflicting if self.resend else ())


def differing(a: object, b: object, names: Sequence[str]) -> list[str]:
    """Fields where both sides have a value and the values differ."""
    out = []
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        if x is not None and y is not None and x != y:
            out.append(name)
    return out


def plan_study(
    study_uid: str,
    source: Sequence[InstanceRecord],
    destination: Sequence[InstanceRecord],
    strategy: str,
    source_study: StudyRecord | None = None,
    destination_study: StudyRecord | None = None,
) -> StudyPlan:
    """Compare one study's instance sets and attributes and decide what moves.

    REPORT_ONLY sends what is missing and reports conflicts; SKIP leaves a study
    with any conflict untouched; SOURCE_WINS also re-sends conflicting instances.
    """
    held = {i.sop_instance_uid: i for i in destination}
    study_fields: list[str] = []
    if source_study is not None and destination_study is not None:
        study_fields = differing(source_study, destination_study, STUDY_FIELDS)
    missing, conflicting, fields = [], [], set(study_fields)
    for inst in sorted(source, key=lambda i: (i.series_uid, i.instance_number or 0)):
        other = held.get(inst.sop_instance_uid)
        if other is None:
            missing.append(inst)
            continue
        diff = differing(inst, other, INSTANCE_FIELDS)
        if diff or study_fields:
            conflicting.append(inst)
            fields.update(diff)
    skipped = strategy == ConflictStrategy.SKIP and bool(conflicting)
    return StudyPlan(
        study_uid=study_uid,
        source_count=len(source),
        missing=tuple(missing),
        conflicting=tuple(conflicting),
        conflict_fields=tuple(sorted(fields)) if conflicting else (),
        skipped=skipped,
        resend=strategy == ConflictStrategy.SOURCE_WINS,
        whole_series=_whole_series(source, missing),
    )


def _whole_series(
    source: Sequence[InstanceRecord], missing: Sequence[InstanceRecord]
) -> tuple[str, ...]:
    """Series every instance of which is missing: fetched with one study-level stream."""
    total: dict[str, int] = {}
    for i in source:
        total[i.series_uid] = total.get(i.series_uid, 0) + 1
    absent: dict[str, int] = {}
    for i in missing:
        absent[i.series_uid] = absent.get(i.series_uid, 0) + 1
    return tuple(sorted(s for s, n in absent.items() if n == total[s]))


def missing_after(source: Sequence[InstanceRecord], destination: Sequence[InstanceRecord]) -> int:
    """How many source instances the destination still lacks."""
    held = {i.sop_instance_uid for i in destination}
    return sum(1 for i in source if i.sop_instance_uid not in held)


def extra_in(source: Sequence[InstanceRecord], destination: Sequence[InstanceRecord]) -> int:
    """How many instances of the study the destination holds that the source does not."""
    sent = {i.sop_instance_uid for i in source}
    return len({i.sop_instance_uid for i in destination} - sent)
