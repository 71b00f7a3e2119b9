"""DICOM JSON (PS3.18 F.2): its tags, value readers, and the protocol's records made from it.

Used by both HTTP adapters (DICOMweb QIDO/STOW answers, Orthanc's DICOM JSON).
Matching is `gateway.sources.matching`, ordering and paging
`gateway.sources.paging`, Part 10 bytes `gateway.sources.part10`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.sources import normalize as n
from gateway.sources.base import InstanceRecord, PatientRecord, SeriesRecord, StudyRecord

Json = Mapping[str, Any]

SPECIFIC_CHARACTER_SET = "00080005"
SOP_CLASS_UID = "00080016"
SOP_INSTANCE_UID = "00080018"
STUDY_DATE = "00080020"
STUDY_TIME = "00080030"
ACCESSION_NUMBER = "00080050"
MODALITY = "00080060"
MODALITIES_IN_STUDY = "00080061"
STUDY_DESCRIPTION = "00081030"
SERIES_DESCRIPTION = "0008103E"
FAILURE_REASON = "00081197"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_INSTANCE_UID = "00081155"
PATIENT_NAME = "00100010"
PATIENT_ID = "00100020"
ISSUER_OF_PATIENT_ID = "00100021"
PATIENT_BIRTH_DATE = "00100030"
PATIENT_SEX = "00100040"
STUDY_INSTANCE_UID = "0020000D"
SERIES_INSTANCE_UID = "0020000E"
SERIES_NUMBER = "00200011"
INSTANCE_NUMBER = "00200013"
PATIENT_STUDIES = "00201200"
STUDY_SERIES = "00201206"
STUDY_INSTANCES = "00201208"
SERIES_INSTANCES = "00201209"
DUPLICATE_SOP_INSTANCE = 0x0111


# Fast normalisers: the same results as `normalize`, several times faster on the
# clean values archives mostly send (taken as they are; checks inlined, as
# these run ~10 times per record and 1,000s of records per query).
def text(value: Any) -> str | None:
    """`normalize.text`."""
    if value.__class__ is str and value and value[0] > " " and value[-1] > " ":
        return value
    return None if value is None else n.text(value)


def person_name(value: Any) -> str | None:
    """`normalize.person_name`."""
    if value.__class__ is dict and value.get("Alphabetic").__class__ is str:
        value = value["Alphabetic"]  # DICOM JSON's PN object
    if value.__class__ is str and value and value[0] > " " and value[-1] > " ":
        if value[-1] != "^" and "=" not in value:
            return value
    return n.person_name(value)


def date(value: Any) -> str | None:
    """`normalize.date`."""
    if value.__class__ is str and len(value) == 8 and value.isdigit():
        return value
    return n.date(value)


def time_(value: Any) -> str | None:
    """`normalize.time_`."""
    if value.__class__ is str and value and value[0] > " " and value[-1] > " ":
        if ":" not in value:
            return value
    return n.time_(value)


def integer(value: Any) -> int | None:
    """`normalize.integer` (exact for large ints, which it would round through float)."""
    return value if value.__class__ is int else n.integer(value)


def values(item: Json, tag: str) -> list[Any]:
    """The Value array of `tag` ([] when absent or empty)."""
    element = item.get(tag)
    # `dict` first: parsed JSON is made of dicts, and an ABC check costs 10x more.
    if element.__class__ is not dict and not isinstance(element, Mapping):
        return []
    value = element.get("Value")
    return value if isinstance(value, list) else []


def first(item: Json, tag: str) -> Any:
    """The first value of `tag`, or None."""
    element = item.get(tag)
    if element.__class__ is dict:  # the common case, inlined: this runs 13 times a record
        value = element.get("Value")
        return value[0] if isinstance(value, list) and value else None
    found = values(item, tag)
    return found[0] if found else None


def patient_record(item: Json) -> PatientRecord:
    """A patient-level QIDO result."""
    return PatientRecord(
        patient_id=text(first(item, PATIENT_ID)) or "",
        issuer=text(first(item, ISSUER_OF_PATIENT_ID)),
        name=person_name(first(item, PATIENT_NAME)),
        birth_date=date(first(item, PATIENT_BIRTH_DATE)),
        sex=text(first(item, PATIENT_SEX)),
        studies=integer(first(item, PATIENT_STUDIES)),
    )


def study_record(item: Json) -> StudyRecord:
    """A study-level QIDO result."""
    return StudyRecord(
        study_uid=text(first(item, STUDY_INSTANCE_UID)) or "",
        patient_id=text(first(item, PATIENT_ID)),
        patient_name=person_name(first(item, PATIENT_NAME)),
        issuer=text(first(item, ISSUER_OF_PATIENT_ID)),
        birth_date=date(first(item, PATIENT_BIRTH_DATE)),
        sex=text(first(item, PATIENT_SEX)),
        study_date=date(first(item, STUDY_DATE)),
        study_time=time_(first(item, STUDY_TIME)),
        description=text(first(item, STUDY_DESCRIPTION)),
        accession_number=text(first(item, ACCESSION_NUMBER)),
        modalities=n.modalities(values(item, MODALITIES_IN_STUDY)),
        series_count=integer(first(item, STUDY_SERIES)),
        instance_count=integer(first(item, STUDY_INSTANCES)),
    )


def series_record(item: Json, study_uid: str = "") -> SeriesRecord:
    """A series-level QIDO result (`study_uid` when the result omits it)."""
    return SeriesRecord(
        series_uid=text(first(item, SERIES_INSTANCE_UID)) or "",
        study_uid=text(first(item, STUDY_INSTANCE_UID)) or study_uid,
        modality=text(first(item, MODALITY)),
        series_number=integer(first(item, SERIES_NUMBER)),
        description=text(first(item, SERIES_DESCRIPTION)),
        instance_count=integer(first(item, SERIES_INSTANCES)),
    )


def instance_record(item: Json, study_uid: str | None = None) -> InstanceRecord:
    """An instance-level QIDO result."""
    return InstanceRecord(
        sop_instance_uid=text(first(item, SOP_INSTANCE_UID)) or "",
        series_uid=text(first(item, SERIES_INSTANCE_UID)) or "",
        study_uid=text(first(item, STUDY_INSTANCE_UID)) or study_uid or "",
        sop_class_uid=text(first(item, SOP_CLASS_UID)),
        instance_number=integer(first(item, INSTANCE_NUMBER)),
    )


def stow_outcome(item: Json | None) -> tuple[set[str], set[str]]:
    """(stored, failed) SOP Instance UIDs of a STOW-RS answer (PS3.18 10.5.3).

    A failure for a duplicate SOP instance (reason 0111H) counts as stored.
    """
    if not item:
        return set(), set()

    def refs(tag: str) -> list[tuple[str, int | None]]:
        found = []
        for ref in values(item, tag):
            if isinstance(ref, Mapping) and (
                uid := n.text(first(ref, REFERENCED_SOP_INSTANCE_UID))
            ):
                found.append((uid, n.integer(first(ref, FAILURE_REASON))))
        return found

    failed = refs(FAILED_SOP_SEQUENCE)
    stored = {uid for uid, _ in refs(REFERENCED_SOP_SEQUENCE)}
    stored |= {uid for uid, reason in failed if reason == DUPLICATE_SOP_INSTANCE}
    return stored, {uid for uid, reason in failed if reason != DUPLICATE_SOP_INSTANCE}
