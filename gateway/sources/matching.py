"""DICOM attribute matching (PS3.4 C.2.2.2) done locally: the one place for it.

Every adapter filters what its archive answers with the `*_matches`
functions here, so all of them give the same matches whatever the archive's
own matching does (an archive's matching only narrows the candidates; e.g.
dcmqrscp matches person names case-sensitively). `widen` and `uid_list`
build the keys sent to an archive so its matches include ours.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from functools import lru_cache

from gateway.core.uids import is_uid
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
from gateway.sources.normalize import person_name

_SAFE = frozenset(string.ascii_letters + string.digits + "-._~*?^")


@lru_cache(maxsize=256)
def _wildcard_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts) + r"\Z", re.IGNORECASE if ignore_case else 0)


def has_wildcard(pattern: str) -> bool:
    """True when `pattern` uses `*` or `?`."""
    return "*" in pattern or "?" in pattern


def match_string(pattern: str | None, value: str | None, ignore_case: bool = False) -> bool:
    """Single-value matching with `*`/`?` wildcards; an empty pattern matches anything."""
    if not pattern or pattern == "*":
        return True
    if value is None:
        return False
    return _wildcard_regex(pattern, ignore_case).match(value) is not None


def match_person_name(pattern: str | None, value: str | None) -> bool:
    """PN matching, case-insensitive, on the alphabetic group.

    A pattern without `^` and without wildcards matches the family name or the
    whole name, as most archives do for a plain "Smith".
    """
    if not pattern or pattern == "*":
        return True
    name = person_name(value)
    if name is None:
        return False
    if match_string(pattern, name, ignore_case=True):
        return True
    return match_string(pattern.rstrip("^") + "^*", name, ignore_case=True)


def parse_date_range(pattern: str) -> tuple[str | None, str | None]:
    """ "A-B", "A-", "-B" or "A" as (low, high), inclusive."""
    if "-" not in pattern:
        return pattern, pattern
    low, _, high = pattern.partition("-")
    return low or None, high or None


def match_date(pattern: str | None, value: str | None) -> bool:
    """DA range matching ("YYYYMMDD", "A-B", "A-", "-B")."""
    if not pattern:
        return True
    if value is None:
        return False
    low, high = parse_date_range(pattern)
    return (low is None or value >= low) and (high is None or value <= high)


def match_uid_list(uids: tuple[str, ...], value: str | None) -> bool:
    """UID list matching; an empty list matches anything."""
    return not uids or value in uids


def match_any(pattern: str | None, values: Iterable[str]) -> bool:
    """Multi-valued matching (e.g. ModalitiesInStudy): any value matches; no pattern matches all."""
    return not pattern or any(match_string(pattern, v) for v in values)


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
        and match_any(q.modality, r.modalities)
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


def uid_list(uids: Sequence[str]) -> tuple[str, ...] | None:
    """The valid UIDs of a UID-list key; None when a list was given but none can match."""
    valid = tuple(u for u in uids if is_uid(u))
    return None if uids and not valid else valid


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
