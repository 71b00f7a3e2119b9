"""C-FIND identifiers, local matching and dataset → record conversion for `DimseSource`.

Identifiers always carry SpecificCharacterSet "ISO_IR 192" so non-ASCII keys
are sent as UTF-8 and answers decode right. Person names are sent *broadened*
(`broaden_person_name`) because some SCPs (dcmqrscp) match PN case-sensitively;
every answer is then filtered locally with `gateway.sources.matching`, so all
adapters give the same matches. Answers are flattened to keyword → text
(`flatten`). A key the SCP did not return is trusted to have been matched by
the SCP. Paging is `gateway.sources.paging`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import Tag

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
    instance_matches,
    match_any,
    patient_matches,
    series_matches,
    study_matches,
)

CHARSET = "ISO_IR 192"
UID_CHUNK = 100  # UIDs per list-matching key (a UI element holds at most 64 KiB)

PATIENT_KEYS = (
    "PatientID",
    "PatientName",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "NumberOfPatientRelatedStudies",
)
STUDY_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_KEYS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)
IMAGE_KEYS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
)


Answer = dict[str, str]  # a C-FIND answer: keyword → text, only the keys the SCP returned
_KEYWORDS = {
    Tag(tag): keyword
    for keyword in {*PATIENT_KEYS, *STUDY_KEYS, *SERIES_KEYS, *IMAGE_KEYS}
    if (tag := tag_for_keyword(keyword)) is not None
}
_CHARSET = Tag(0x00080005)
_CODECS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


def flatten(ds: Dataset) -> Answer:
    """An answer as keyword → text, decoding the raw bytes directly when the charset allows.

    pydicom's per-element conversion costs ~15 µs an element, which for a
    1,000-patient answer outweighs the query itself; other charsets fall back to it.
    """
    raw = ds.get_item(_CHARSET).value if _CHARSET in ds else b""
    charset = raw.decode("ascii", "replace").strip(" \x00") if isinstance(raw, bytes) else None
    codec = _CODECS.get(charset) if charset is not None else None
    out: Answer = {}
    for tag, keyword in _KEYWORDS.items():
        if tag not in ds:
            continue
        value = ds.get_item(tag).value
        if codec is not None and isinstance(value, bytes):
            try:
                out[keyword] = value.decode(codec)
                continue
            except UnicodeDecodeError:
                pass
        value = ds[tag].value
        if isinstance(value, list | tuple):
            out[keyword] = "\\".join(str(v) for v in value)
        else:
            out[keyword] = "" if value is None else str(value)
    return out


@dataclass(frozen=True, slots=True)
class StudyCounts:
    """Counts derived from series/instance-level queries when the SCP omits them."""

    series: int
    modalities: tuple[str, ...]
    instances: int | None = None


def broaden_person_name(pattern: str | None) -> str:
    """A PN key that matches every case variant of `pattern` on a case-sensitive SCP.

    ASCII letters become `?`; `?` and non-ASCII characters become `*` (an SCP
    may count bytes, not characters); a trailing `*` covers the family-name-only
    form and trailing component separators. The answer is filtered locally.
    """
    if not pattern:
        return ""
    out: list[str] = []
    for c in pattern:
        if c.isascii() and c.isalpha():
            out.append("?")
        elif c in "*?" or not c.isascii():
            out.append("*")
        else:
            out.append(c)
    out.append("*")
    key = "".join(out)
    while "**" in key:
        key = key.replace("**", "*")
    return "" if key == "*" else key


def chunks(uids: Sequence[str], size: int = UID_CHUNK) -> Iterator[tuple[str, ...]]:
    """`uids` in slices of `size`; one empty tuple (universal matching) when there are none."""
    if not uids:
        yield ()
        return
    for i in range(0, len(uids), size):
        yield tuple(uids[i : i + size])


def identifier(level: str, keys: Iterable[str], values: dict[str, Any]) -> Dataset:
    """A C-FIND identifier at `level` returning `keys`, matching on `values`."""
    ds = Dataset()
    ds.SpecificCharacterSet = CHARSET
    ds.QueryRetrieveLevel = level
    for key in keys:
        value = values.get(key)
        if isinstance(value, tuple | list):
            value = list(value) if len(value) > 1 else (value[0] if value else "")
        setattr(ds, key, "" if value is None else value)
    return ds


def patient_identifier(q: PatientQuery) -> Dataset:
    """Patient Root, PATIENT level."""
    values = {
        "PatientID": q.patient_id,
        "PatientName": broaden_person_name(q.name),
        "PatientBirthDate": q.birth_date,
    }
    return identifier("PATIENT", PATIENT_KEYS, values)


def study_identifier(q: StudyQuery, uids: tuple[str, ...]) -> Dataset:
    """Study Root, STUDY level, for one chunk of the UID list."""
    values = {
        "StudyInstanceUID": uids,
        "PatientID": q.patient_id,
        "PatientName": broaden_person_name(q.patient_name),
        "AccessionNumber": q.accession_number,
        "StudyDate": q.study_date,
        "StudyDescription": q.description,
        "ModalitiesInStudy": q.modality,
    }
    return identifier("STUDY", STUDY_KEYS, values)


def studies_of_patients_identifier(q: PatientQuery) -> Dataset:
    """Study Root, STUDY level, with a patient query's keys (to derive patients or counts)."""
    values = {
        "PatientID": q.patient_id,
        "PatientName": broaden_person_name(q.name),
        "PatientBirthDate": q.birth_date,
    }
    keys = ("StudyInstanceUID", *PATIENT_KEYS[:-1])
    return identifier("STUDY", keys, values)


def series_identifier(
    study_uids: tuple[str, ...], series_uids: Sequence[str] = (), modality: str | None = None
) -> Dataset:
    """Study Root, SERIES level (UID lists for studies and, when short, series)."""
    values: dict[str, Any] = {
        "StudyInstanceUID": study_uids,
        "SeriesInstanceUID": tuple(series_uids) if len(series_uids) <= UID_CHUNK else (),
        "Modality": modality,
    }
    return identifier("SERIES", SERIES_KEYS, values)


def image_identifier(
    study_uids: tuple[str, ...], series_uids: Sequence[str] = (), sop_uids: Sequence[str] = ()
) -> Dataset:
    """Study Root, IMAGE level."""
    values: dict[str, Any] = {
        "StudyInstanceUID": study_uids,
        "SeriesInstanceUID": tuple(series_uids) if len(series_uids) <= UID_CHUNK else (),
        "SOPInstanceUID": tuple(sop_uids) if len(sop_uids) <= UID_CHUNK else (),
    }
    return identifier("IMAGE", IMAGE_KEYS, values)


def value(ds: Answer, keyword: str) -> str | None:
    """The text of `keyword`, None when absent."""
    return ds.get(keyword)


def uid(ds: Answer, keyword: str) -> str:
    """A UID value as a plain string ("" when absent)."""
    return n.text(ds.get(keyword)) or ""


# The query key each returned keyword is matched with. A keyword the SCP did not
# return is trusted to have been matched by the SCP: its key is made universal
# (`_trusted`), then the answer is matched as a record like any archive's.
_PATIENT_MATCH = {
    "PatientID": "patient_id",
    "PatientName": "name",
    "PatientBirthDate": "birth_date",
}
_STUDY_MATCH = {
    "StudyInstanceUID": "study_uids",
    "PatientID": "patient_id",
    "PatientName": "patient_name",
    "AccessionNumber": "accession_number",
    "StudyDate": "study_date",
    "StudyDescription": "description",
    "ModalitiesInStudy": "modality",
}
_SERIES_MATCH = {
    "StudyInstanceUID": "study_uids",
    "SeriesInstanceUID": "series_uids",
    "Modality": "modality",
}
_IMAGE_MATCH = {
    "StudyInstanceUID": "study_uid",
    "SeriesInstanceUID": "series_uids",
    "SOPInstanceUID": "sop_instance_uids",
}
# Universal keys: None for single values, () for UID lists; an image-level answer
# without StudyInstanceUID makes a record whose study_uid is "" (`uid`), hence "".
_UNIVERSAL: dict[str, Any] = {
    "study_uids": (),
    "series_uids": (),
    "sop_instance_uids": (),
    "study_uid": "",
}
Q = TypeVar("Q", PatientQuery, StudyQuery, SeriesQuery, InstanceQuery)


def _trusted(q: Q, ds: Answer, keys: Mapping[str, str]) -> Q:
    """`q` with the keys of the keywords `ds` lacks made universal."""
    unreturned: dict[str, Any] = {
        field: _UNIVERSAL.get(field) for kw, field in keys.items() if kw not in ds
    }
    return replace(q, **unreturned) if unreturned else q


def keep_patient(ds: Answer, q: PatientQuery) -> bool:
    """Local PS3.4 matching of a patient-level (or study-level) answer."""
    return patient_matches(_trusted(q, ds, _PATIENT_MATCH), patient_record(ds, None))


def keep_study(ds: Answer, q: StudyQuery) -> bool:
    """Local matching of a study-level answer (ModalitiesInStudy only when returned)."""
    return study_matches(_trusted(q, ds, _STUDY_MATCH), study_record(ds, None))


def keep_modality(pattern: str | None, counts: StudyCounts | None) -> bool:
    """Modality matching on derived modalities (for SCPs without ModalitiesInStudy)."""
    return counts is not None and match_any(pattern, counts.modalities)


def keep_series(ds: Answer, q: SeriesQuery) -> bool:
    """Local matching of a series-level answer."""
    return series_matches(_trusted(q, ds, _SERIES_MATCH), series_record(ds, None))


def keep_instance(ds: Answer, q: InstanceQuery) -> bool:
    """Local matching of an image-level answer."""
    return instance_matches(_trusted(q, ds, _IMAGE_MATCH), instance_record(ds))


def unique(rows: Iterable[Answer], keyword: str) -> list[Answer]:
    """Answers without duplicates (first wins) and without an empty unique key."""
    seen: set[str] = set()
    out = []
    for ds in rows:
        key = uid(ds, keyword)
        if key and key not in seen:
            seen.add(key)
            out.append(ds)
    return out


def patient_record(ds: Answer, studies: int | None) -> PatientRecord:
    """A patient (or study-level) answer as a record."""
    count = n.integer(value(ds, "NumberOfPatientRelatedStudies"))
    return PatientRecord(
        patient_id=n.text(value(ds, "PatientID")) or "",
        issuer=n.text(value(ds, "IssuerOfPatientID")),
        name=n.person_name(value(ds, "PatientName")),
        birth_date=n.date(value(ds, "PatientBirthDate")),
        sex=n.text(value(ds, "PatientSex")),
        studies=count if count is not None else studies,
    )


def has_study_counts(ds: Answer) -> bool:
    """True when the SCP returned every count and ModalitiesInStudy."""
    return all(
        k in ds
        for k in (
            "ModalitiesInStudy",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
        )
    )


def study_record(ds: Answer, counts: StudyCounts | None) -> StudyRecord:
    """A study answer as a record; missing counts come from `counts`."""
    series = n.integer(value(ds, "NumberOfStudyRelatedSeries"))
    instances = n.integer(value(ds, "NumberOfStudyRelatedInstances"))
    mods = n.modalities(value(ds, "ModalitiesInStudy"))
    if counts is not None:
        series = series if "NumberOfStudyRelatedSeries" in ds else counts.series
        instances = instances if "NumberOfStudyRelatedInstances" in ds else counts.instances
        mods = mods if "ModalitiesInStudy" in ds else counts.modalities
    return StudyRecord(
        study_uid=uid(ds, "StudyInstanceUID"),
        patient_id=n.text(value(ds, "PatientID")),
        patient_name=n.person_name(value(ds, "PatientName")),
        issuer=n.text(value(ds, "IssuerOfPatientID")),
        birth_date=n.date(value(ds, "PatientBirthDate")),
        sex=n.text(value(ds, "PatientSex")),
        study_date=n.date(value(ds, "StudyDate")),
        study_time=n.time_(value(ds, "StudyTime")),
        description=n.text(value(ds, "StudyDescription")),
        accession_number=n.text(value(ds, "AccessionNumber")),
        modalities=mods,
        series_count=series,
        instance_count=instances,
    )


def series_record(ds: Answer, instances: int | None) -> SeriesRecord:
    """A series answer as a record."""
    count = n.integer(value(ds, "NumberOfSeriesRelatedInstances"))
    return SeriesRecord(
        series_uid=uid(ds, "SeriesInstanceUID"),
        study_uid=uid(ds, "StudyInstanceUID"),
        modality=n.text(value(ds, "Modality")),
        series_number=n.integer(value(ds, "SeriesNumber")),
        description=n.text(value(ds, "SeriesDescription")),
        instance_count=count if "NumberOfSeriesRelatedInstances" in ds else instances,
    )


def instance_record(ds: Answer) -> InstanceRecord:
    """An image-level answer as a record."""
    return InstanceRecord(
        sop_instance_uid=uid(ds, "SOPInstanceUID"),
        series_uid=uid(ds, "SeriesInstanceUID"),
        study_uid=uid(ds, "StudyInstanceUID"),
        sop_class_uid=n.text(value(ds, "SOPClassUID")),
        instance_number=n.integer(value(ds, "InstanceNumber")),
    )
