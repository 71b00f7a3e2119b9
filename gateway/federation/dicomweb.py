"""The federated DICOMweb (PS3.18) endpoint's pure part: QIDO-RS query parameters to the
adapters' queries, merged records to DICOM JSON, and the partial-result warning.

No I/O here: `gateway.server.dicomweb` asks the archives and streams the answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import InvalidInput, shown
from gateway.core.uids import is_uid
from gateway.federation.fanout import Outcome
from gateway.federation.merge import Merged
from gateway.sources.base import InstanceRecord, SeriesRecord, StudyQuery, StudyRecord

MAX_LIMIT = 1000
DEFAULT_LIMIT = 200

# attribute keywords and tags the QIDO-RS study search takes, as `StudyQuery` fields
STUDY_KEYS: dict[str, str] = {
    "PatientName": "patient_name",
    "00100010": "patient_name",
    "PatientID": "patient_id",
    "00100020": "patient_id",
    "AccessionNumber": "accession_number",
    "00080050": "accession_number",
    "StudyDate": "study_date",
    "00080020": "study_date",
    "ModalitiesInStudy": "modality",
    "00080061": "modality",
    "StudyDescription": "description",
    "00081030": "description",
}
UID_KEYS = ("StudyInstanceUID", "0020000D")
# parameters that are not matching keys (PS3.18 8.3.4): accepted, no effect on matching
CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}


@dataclass(frozen=True, slots=True)
class Window:
    """`offset` and `limit` of a search, applied to the merged, ordered answer."""

    offset: int = 0
    limit: int = DEFAULT_LIMIT

    def cut(self, items: Sequence[Any]) -> list[Any]:
        """The window of `items`."""
        return list(items[self.offset : self.offset + self.limit])


def _integer(params: Mapping[str, list[str]], key: str, default: int, top: int) -> int:
    values = params.get(key) or []
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise InvalidInput(f"{key}: an integer is required") from None
    if not 0 <= value <= top:
        raise InvalidInput(f"{key}: from 0 to {top}")
    return value


def window(params: Mapping[str, list[str]]) -> Window:
    """`offset` and `limit` of a search (limit at most MAX_LIMIT)."""
    return Window(
        _integer(params, "offset", 0, 10**9), _integer(params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    )


def study_query(params: Mapping[str, list[str]]) -> StudyQuery:
    """The adapters' study query for QIDO-RS parameters; INVALID_INPUT names a bad key."""
    fields: dict[str, Any] = {}
    uids: list[str] = []
    for key, values in params.items():
        if key in CONTROL or not values:
            continue
        if key in UID_KEYS:
            for value in values:
                uids += [u.strip() for u in value.split(",") if u.strip()]
        elif key in STUDY_KEYS:
            value = values[-1]
            if len(value) > 324:
                raise InvalidInput(f"{key}: at most 324 characters")
            fields[STUDY_KEYS[key]] = value
        else:
            raise InvalidInput(f"{shown(key)}: not a matching key this endpoint supports")
    bad = [u for u in uids if not is_uid(u)]
    if bad:
        raise InvalidInput(f"StudyInstanceUID: {shown(bad[0])} is not a UID")
    return StudyQuery(study_uids=tuple(uids[:MAX_LIMIT]), **fields)


def _element(vr: str, *values: Any) -> dict[str, Any]:
    present = [v for v in values if v is not None and v != ""]
    if not present:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in present]}
    return {"vr": vr, "Value": list(present)}


def _first(merged: Merged[Any], name: str) -> Any:
    for record in merged.records.values():
        value = getattr(record, name)
        if value not in (None, "", ()):
            return value
    return None


def _most(merged: Merged[Any], name: str) -> int | None:
    counts = [getattr(r, name) for r in merged.records.values() if getattr(r, name) is not None]
    return max(counts) if counts else None


def study_json(merged: Merged[StudyRecord], root: str) -> dict[str, Any]:
    """One merged study as a QIDO-RS DICOM JSON object; counts are the largest any holder
    reports (a lower bound of the union), modalities the union."""
    uid = merged.key
    modalities = sorted({m for r in merged.records.values() for m in r.modalities if m})
    return {
        "00080020": _element("DA", _first(merged, "study_date")),
        "00080030": _element("TM", _first(merged, "study_time")),
        "00080050": _element("SH", _first(merged, "accession_number")),
        "00080061": _element("CS", *modalities),
        "00081030": _element("LO", _first(merged, "description")),
        "00081190": _element("UR", f"{root}/studies/{uid}"),
        "00100010": _element("PN", _first(merged, "patient_name")),
        "00100020": _element("LO", _first(merged, "patient_id")),
        "00100030": _element("DA", _first(merged, "birth_date")),
        "00100040": _element("CS", _first(merged, "sex")),
        "0020000D": _element("UI", uid),
        "00201206": _element("IS", _most(merged, "series_count")),
        "00201208": _element("IS", _most(merged, "instance_count")),
    }


def series_json(merged: Merged[SeriesRecord], root: str) -> dict[str, Any]:
    """One merged series as a QIDO-RS DICOM JSON object."""
    any_record = next(iter(merged.records.values()))
    study = any_record.study_uid
    return {
        "00080060": _element("CS", _first(merged, "modality")),
        "0008103E": _element("LO", _first(merged, "description")),
        "00081190": _element("UR", f"{root}/studies/{study}/series/{merged.key}"),
        "0020000D": _element("UI", study),
        "0020000E": _element("UI", merged.key),
        "00200011": _element("IS", _first(merged, "series_number")),
        "00201209": _element("IS", _most(merged, "instance_count")),
    }


def instance_json(merged: Merged[InstanceRecord], root: str) -> dict[str, Any]:
    """One merged instance as a QIDO-RS DICOM JSON object."""
    record = next(iter(merged.records.values()))
    where = f"{root}/studies/{record.study_uid}/series/{record.series_uid}/instances/{merged.key}"
    return {
        "00080016": _element("UI", _first(merged, "sop_class_uid")),
        "00080018": _element("UI", merged.key),
        "00081190": _element("UR", where),
        "0020000D": _element("UI", record.study_uid),
        "0020000E": _element("UI", record.series_uid),
        "00200013": _element("IS", _first(merged, "instance_number")),
    }


def warning(outcomes: Sequence[Outcome[Any]], host: str = "pacs-gateway") -> str | None:
    """A PS3.18 `Warning: 299` header value naming each archive that did not answer (its
    id and status only), or None when every asked archive answered."""
    failed = [o for o in outcomes if o.status not in ("OK", "SKIPPED")]
    if not failed:
        return None
    parts = ", ".join(f"{o.source} {o.status}" for o in failed)
    return f'299 {host} "partial result: {parts}"'
