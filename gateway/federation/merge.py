"""Merging records from several sources: presence, absence, counts and conflicts.

Pure functions. Patients merge on PatientID, studies, series and instances on
their UIDs. A source that failed is neither "present" nor "missing": only
sources that answered can be said to lack an object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gateway.sources.base import InstanceRecord, PatientRecord, SeriesRecord, StudyRecord

R = TypeVar("R")

PATIENT_FIELDS = ("name", "birth_date", "sex", "issuer")
STUDY_FIELDS = (
    "patient_id",
    "patient_name",
    "birth_date",
    "sex",
    "study_date",
    "study_time",
    "description",
    "accession_number",
    "modalities",
)
SERIES_FIELDS = ("modality", "series_number", "description")
INSTANCE_FIELDS = ("sop_class_uid", "instance_number")
CONTRACT_NAMES = {
    "name": "name",
    "birth_date": "birthDate",
    "sex": "sex",
    "issuer": "issuerOfPatientId",
    "patient_id": "patientId",
    "patient_name": "patientName",
    "study_date": "studyDate",
    "study_time": "studyTime",
    "description": "description",
    "accession_number": "accessionNumber",
    "modalities": "modalities",
    "modality": "modality",
    "series_number": "seriesNumber",
    "sop_class_uid": "sopClassUid",
    "instance_number": "instanceNumber",
}


@dataclass(frozen=True, slots=True)
class Conflict:
    """One attribute whose value differs between the sources holding the object."""

    field: str
    values: tuple[tuple[str, str | None], ...]  # (source, value) in source order


@dataclass(slots=True)
class Merged(Generic[R]):
    """One object as every answering source holds it."""

    key: str
    records: dict[str, R] = field(default_factory=dict)  # source id -> record
    missing_from: tuple[str, ...] = ()
    conflicts: tuple[Conflict, ...] = ()

    @property
    def present_in(self) -> tuple[str, ...]:
        """Sources holding the object, in source order."""
        return tuple(self.records)

    @property
    def first(self) -> R:
        """The record of the first source holding the object."""
        return next(iter(self.records.values()))

    def value(self, name: str) -> Any:
        """The first non-empty value of attribute `name` across sources."""
        for record in self.records.values():
            v = getattr(record, name)
            if v not in (None, ()):
                return v
        return None


def _as_text(value: Any) -> str | None:
    if value is None or value == ():
        return None
    if isinstance(value, tuple):
        return "\\".join(value)
    return str(value)


def conflicts_of(records: Mapping[str, Any], fields: Iterable[str]) -> tuple[Conflict, ...]:
    """Attributes whose non-empty values differ between `records`."""
    if len(records) < 2:
        return ()
    sources, held = list(records), list(records.values())
    out = []
    for name in fields:
        raw = [getattr(r, name) for r in held]
        if all(v == raw[0] for v in raw[1:]):
            continue  # the common case: every source says the same
        values = [(src, _as_text(v)) for src, v in zip(sources, raw, strict=True)]
        distinct = {v for _, v in values if v is not None}
        if len(distinct) > 1:
            out.append(Conflict(CONTRACT_NAMES.get(name, name), tuple(values)))
    return tuple(out)


def merge(
    answered: Mapping[str, Sequence[R]],
    key: Callable[[R], str],
    fields: Sequence[str],
    expected: Sequence[str] | None = None,
) -> list[Merged[R]]:
    """Merge per-source record lists by `key`, sorted by key.

    `answered` holds only sources that answered, in source order. `expected`
    narrows who should hold each object (default: every answering source).
    """
    merged: dict[str, Merged[R]] = {}
    for source, records in answered.items():
        for record in records:
            k = key(record)
            m = merged.get(k)
            if m is None:
                m = merged[k] = Merged(k)
            m.records.setdefault(source, record)
    order = list(answered)
    out = []
    for k in sorted(merged):
        m = merged[k]
        m.records = {s: m.records[s] for s in order if s in m.records}
        holders = expected if expected is not None else order
        m.missing_from = tuple(s for s in holders if s not in m.records)
        m.conflicts = conflicts_of(m.records, fields)
        out.append(m)
    return out


ISSUER_SEP = "\x1f"


def merge_patients(answered: Mapping[str, Sequence[PatientRecord]]) -> list[Merged[PatientRecord]]:
    """Patients merged on PatientID and, where sources name several issuers for one ID,
    IssuerOfPatientID: then each issuer is a patient of its own, keyed "ID<US>issuer",
    and records without an issuer form one more (they cannot be told apart)."""
    issuers: dict[str, set[str]] = {}
    for records in answered.values():
        for r in records:
            if r.issuer:
                issuers.setdefault(r.patient_id, set()).add(r.issuer)
    return merge(answered, lambda r: patient_key(r.patient_id, r.issuer, issuers), PATIENT_FIELDS)


def patient_key(patient_id: str, issuer: str | None, issuers: Mapping[str, set[str]]) -> str:
    """The merge key of a patient record (see `merge_patients`)."""
    if len(issuers.get(patient_id, ())) <= 1:
        return patient_id
    return f"{patient_id}{ISSUER_SEP}{issuer or ''}"


def split_key(key: str) -> tuple[str, str | None]:
    """(PatientID, issuer) of a patient merge key; issuer None when the ID alone is the key."""
    if ISSUER_SEP not in key:
        return key, None
    patient_id, issuer = key.split(ISSUER_SEP, 1)
    return patient_id, issuer


def merge_studies(answered: Mapping[str, Sequence[StudyRecord]]) -> list[Merged[StudyRecord]]:
    """Studies merged on StudyInstanceUID."""
    return merge(answered, lambda r: r.study_uid, STUDY_FIELDS)


def merge_series(
    answered: Mapping[str, Sequence[SeriesRecord]], expected: Sequence[str] | None = None
) -> list[Merged[SeriesRecord]]:
    """Series merged on SeriesInstanceUID."""
    return merge(answered, lambda r: r.series_uid, SERIES_FIELDS, expected)


def merge_instances(
    answered: Mapping[str, Sequence[InstanceRecord]], expected: Sequence[str] | None = None
) -> list[Merged[InstanceRecord]]:
    """Instances merged on SOPInstanceUID."""
    return merge(answered, lambda r: r.sop_instance_uid, INSTANCE_FIELDS, expected)
