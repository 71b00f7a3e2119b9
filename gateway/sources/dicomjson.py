"""DICOM JSON (PS3.18 F.2) into the protocol's records; record filtering, ordering, paging.

The filtering, ordering and paging helpers are shared by the HTTP adapters so
that every archive's answer is matched the same way (an archive's own matching
only narrows the candidates) and comes back in the same order: patients by id,
studies by Study Instance UID, series by (study, series UID), instances by
(study, series, instance number, SOP Instance UID).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping, Sequence
from io import BytesIO
from operator import attrgetter
from typing import Any, TypeVar

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from gateway.sources import normalize as n
from gateway.sources.base import (
    InstanceQuery,
    InstanceRecord,
    PatientQuery,
    PatientRecord,
    SeriesQuery,
    SeriesRecord,
    StudyQuery,
    StudyRecord,
)
from gateway.sources.matching import (
    match_date,
    match_person_name,
    match_string,
    match_uid_list,
)

Json = Mapping[str, Any]
R = TypeVar("R")

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
DUPLICATE_SOP_INSTANCE = 0x0111
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\Z")
_SAFE = frozenset(string.ascii_letters + string.digits + "-._~*?^")
SERIES_INSTANCES = "00201209"


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


_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


def meta_sop_instance_uid(part10: bytes) -> str | None:
    """(0002,0003) Media Storage SOP Instance UID read straight from the file meta bytes.

    PS3.10 7.1: after the 128-byte preamble and "DICM", group 0002 in explicit VR
    little endian. None when the bytes do not look like that.
    """
    if part10[128:132] != b"DICM":
        return None
    pos, end = 132, min(len(part10), 132 + 4096)
    while pos + 8 <= end:
        group = int.from_bytes(part10[pos : pos + 2], "little")
        element = int.from_bytes(part10[pos + 2 : pos + 4], "little")
        if group != 0x0002:
            return None
        vr = part10[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            length, pos = int.from_bytes(part10[pos + 8 : pos + 12], "little"), pos + 12
        else:
            length, pos = int.from_bytes(part10[pos + 6 : pos + 8], "little"), pos + 8
        if element == 0x0003:
            uid = part10[pos : pos + length].rstrip(b"\x00 ").decode("ascii", "replace")
            return uid if is_uid(uid) else None
        pos += length
    return None


def sop_instance_uid(part10: bytes) -> str | None:
    """The SOP Instance UID of a Part 10 file, without reading its pixel data."""
    fast = meta_sop_instance_uid(part10)
    if fast is not None:
        return fast
    try:
        ds = dcmread(BytesIO(part10), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except (InvalidDicomError, ValueError, TypeError, EOFError, OSError, KeyError):
        return None
    uid = n.text(ds.get("SOPInstanceUID"))
    if uid is None and "MediaStorageSOPInstanceUID" in getattr(ds, "file_meta", {}):
        uid = n.text(ds.file_meta.MediaStorageSOPInstanceUID)
    return uid


def is_uid(value: str) -> bool:
    """True for a syntactically valid UID (PS3.5 9.1): digits and dots, at most 64."""
    return len(value) <= 64 and _UID.match(value) is not None


def uid_list(uids: Sequence[str]) -> tuple[str, ...] | None:
    """The valid UIDs of a UID-list key; None when a list was given but none can match."""
    valid = tuple(u for u in uids if is_uid(u))
    return None if uids and not valid else valid


def page(records: Sequence[R], offset: int, limit: int | None) -> list[R]:
    """`records[offset:offset+limit]` (no limit when None)."""
    start = max(offset, 0)
    return list(records[start:] if limit is None else records[start : start + max(limit, 0)])


def sort_patients(records: Iterable[PatientRecord]) -> list[PatientRecord]:
    """Patients ordered by (patient id, issuer)."""
    out = list(records)
    if any(r.issuer for r in out):
        out.sort(key=lambda r: (r.patient_id, r.issuer or ""))
    else:  # the same order, 3x faster: no key tuples
        out.sort(key=attrgetter("patient_id"))
    return out


def sort_studies(records: Iterable[StudyRecord]) -> list[StudyRecord]:
    """Studies ordered by Study Instance UID."""
    return sorted(records, key=attrgetter("study_uid"))


def sort_series(records: Iterable[SeriesRecord]) -> list[SeriesRecord]:
    """Series ordered by (study UID, series UID)."""
    return sorted(records, key=lambda r: (r.study_uid, r.series_uid))


def sort_instances(records: Iterable[InstanceRecord]) -> list[InstanceRecord]:
    """Instances ordered by (study, series, instance number, SOP Instance UID)."""

    def key(r: InstanceRecord) -> tuple[str, str, bool, int, str]:
        number = r.instance_number
        return (r.study_uid, r.series_uid, number is None, number or 0, r.sop_instance_uid)

    return sorted(records, key=key)


def widen(value: str | None, open_ended: bool = False) -> str | None:
    """A matching key any archive takes literally and whose matches include `value`'s.

    Characters that some archive mishandles once escaped (Orthanc's QIDO does
    not percent-decode) become `?`; the key is cut at its first non-ASCII
    character and left open with `*`. Person-name keys are always open-ended,
    so a plain family name also finds "FAMILY^GIVEN". None when nothing is left.
    """
    if not value:
        return None
    cut = next((i for i, c in enumerate(value) if ord(c) > 127), None)
    if cut is not None:
        value, open_ended = value[:cut], True
    key = "".join(c if c in _SAFE else "?" for c in value)
    if open_ended and not key.endswith("*"):
        key += "*"
    return None if not key.strip("*") else key


def patient_matches(q: PatientQuery, r: PatientRecord) -> bool:
    """Local DICOM matching of a patient record."""
    return (
        match_string(q.patient_id, r.patient_id)
        and match_person_name(q.name, r.name)
        and match_date(q.birth_date, r.birth_date)
    )


def study_matches(q: StudyQuery, r: StudyRecord) -> bool:
    """Local DICOM matching of a study record (modality against ModalitiesInStudy)."""
    return (
        match_uid_list(q.study_uids, r.study_uid)
        and match_string(q.patient_id, r.patient_id)
        and match_person_name(q.patient_name, r.patient_name)
        and match_string(q.accession_number, r.accession_number)
        and match_date(q.study_date, r.study_date)
        and match_string(q.description, r.description)
        and (not q.modality or any(match_string(q.modality, m) for m in r.modalities))
    )


def series_matches(q: SeriesQuery, r: SeriesRecord) -> bool:
    """Local DICOM matching of a series record."""
    return (
        match_uid_list(q.study_uids, r.study_uid)
        and match_uid_list(q.series_uids, r.series_uid)
        and match_string(q.modality, r.modality)
    )


def instance_matches(q: InstanceQuery, r: InstanceRecord) -> bool:
    """Local DICOM matching of an instance record."""
    return (
        r.study_uid == q.study_uid
        and match_uid_list(q.series_uids, r.series_uid)
        and match_uid_list(q.sop_instance_uids, r.sop_instance_uid)
    )
