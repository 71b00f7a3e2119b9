"""De-identification of one instance: DICOM PS3.15 Annex E, Basic Application Level
Confidentiality Profile with the options of E.3.

`deidentify(ds, config)` returns a de-identified copy (the caller's dataset is
never changed); `deidentify_bytes(data, config)` does the same from and to
Part 10 bytes, for the process pool (picklable arguments and results). Besides
the table actions (`walk.py`), every output gets (PS3.15 E.1.1, PS3.3 C.7.1.1):

- Patient ID and Patient's Name set to the patient's pseudonym (keyed, per project);
- Patient Identity Removed (0012,0062) = YES, De-identification Method (0012,0063)
  and De-identification Method Code Sequence (0012,0064): the profile (DCM 113100)
  and one code per option (PS3.16 CID 7050);
- Longitudinal Temporal Information Modified (0028,0303): MODIFIED, UNMODIFIED or
  REMOVED, as the date options say;
- new file meta: Media Storage SOP Instance UID (0002,0003) = the new SOP Instance
  UID, the same SOP class and transfer syntax, no source AE titles.

Instances that may hold burned-in text are quarantined (`pixels.py`): no dataset
comes back, the report says why. With the Clean Pixel Data option they are cleaned
instead where the pixel data can be; pixel data decoded from another transfer
syntax to be cleaned is written as Explicit VR Little Endian, and the change is
recorded as one more value of De-identification Method ("Clean Pixel Data: decoded
from <transfer syntax UID>") and in the report's actions ("pixels_decoded").

The table's compound actions are resolved for the instance's IOD at the top level
(`iod.py`): a Type 3 attribute under X/Z is removed, a Type 2 one kept zero-length.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from io import BytesIO

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from workers.dicom.deid import iod, keys, pixels, values, writer
from workers.dicom.deid.options import method_codes, parse_options
from workers.dicom.deid.table import EDITION, compile_actions
from workers.dicom.deid.walk import Walker

FULL_DATES = "RetainLongitudinalTemporalInformationFullDates"
MODIFIED_DATES = "RetainLongitudinalTemporalInformationModifiedDates"
_IDENTIFYING_KEYWORDS = (
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "AccessionNumber",
    "StudyID",
    "InstitutionName",
    "InstitutionAddress",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "IssuerOfPatientID",
    "StationName",
)


@dataclass(frozen=True, slots=True)
class DeidConfig:
    """What to do: the HMAC key, the project the pseudonyms belong to, the options."""

    key: str = field(repr=False)
    project: str
    options: frozenset[str] = frozenset()
    clean_pixel_band: float = 0.10

    def __post_init__(self) -> None:
        parse_options(self.options)
        if not self.key:
            raise ValueError("a de-identification key is required")


@dataclass(slots=True)
class DeidReport:
    """What was done to one instance; no patient data (new UIDs and pseudonym only)."""

    actions: dict[str, int]
    quarantined: str | None = None
    patient_pseudonym: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""


@dataclass(slots=True)
class DeidOutcome:
    """The de-identified dataset (None when quarantined), the report, and the original
    identity (for the encrypted mapping only: never log or return it)."""

    dataset: Dataset | None
    report: DeidReport
    identity: dict[str, str]


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def identity_of(ds: Dataset) -> dict[str, str]:
    """The original identifiers of the patient and study (for the encrypted mapping)."""
    names = (
        "PatientID",
        "IssuerOfPatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "AccessionNumber",
        "StudyDate",
    )
    return {k: _text(ds, k) for k in names}


def _identifiers(ds: Dataset) -> set[str]:
    raw = [_text(ds, k) for k in _IDENTIFYING_KEYWORDS]
    raw += [str(e.value) for e in ds if e.VR == "PN" and e.value]
    birth = _text(ds, "PatientBirthDate")
    if len(birth) == 8:
        y, m, d = birth[:4], birth[4:6], birth[6:]
        raw += [f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}", f"{d}/{m}/{y}"]
    return values.identifiers_of(raw)


_UID_MEMO_SIZE = 100_000
_uid_memos: dict[tuple[str, str], dict[str, str]] = {}


def _uid_memo(key: str, project: str) -> dict[str, str]:
    """The original -> new UID memo of one key and project (`keys.new_uid` is pure)."""
    memo = _uid_memos.get((key, project))
    if memo is None:
        if len(_uid_memos) >= 16:
            _uid_memos.clear()
        memo = _uid_memos[(key, project)] = {}
    return memo


def _deidentify_in_place(ds: Dataset, config: DeidConfig) -> DeidOutcome:
    identity = identity_of(ds)
    reason = pixels.quarantine_reason(ds)
    cleaned = None
    if reason is not None and "CleanPixelData" in config.options:
        cleaned = pixels.clean_bands(ds, config.clean_pixel_band)
        reason = cleaned.reason
    if reason is not None:
        report = DeidReport({}, quarantined=reason)
        for attr, keyword in (("series_uid", "SeriesInstanceUID"), ("sop_uid", "SOPInstanceUID")):
            if uid := _text(ds, keyword):
                setattr(report, attr, keys.new_uid(config.key, config.project, uid))
        return DeidOutcome(None, report, identity)
    pid, issuer = identity["PatientID"], identity["IssuerOfPatientID"]
    pseudo = keys.pseudonym(config.key, config.project, pid, issuer)
    shift = None
    if MODIFIED_DATES in config.options:
        shift = keys.date_shift_days(config.key, config.project, pid, issuer)
    scrubber: list[values.Scrubber] = []

    def get_scrubber() -> values.Scrubber:
        if not scrubber:
            scrubber.append(values.Scrubber(_identifiers(ds) | {pid}))
        return scrubber[0]

    if config.options & {"CleanDescriptors", "RetainPatientCharacteristics"}:
        get_scrubber()  # collect the identifiers before the walk removes them

    memo = _uid_memo(config.key, config.project)

    def map_uid(uid: str) -> str:
        new = memo.get(uid)
        if new is None:
            if len(memo) >= _UID_MEMO_SIZE:
                memo.clear()
            new = memo[uid] = keys.new_uid(config.key, config.project, uid)
        return new

    walker = Walker(
        actions=compile_actions(config.options),
        map_uid=map_uid,
        retain_uids="RetainUIDs" in config.options,
        shift_days=shift,
        scrubber=get_scrubber,
    )
    walker.walk(ds, top=iod.top_level_actions(ds, config.options))
    iod.settle(ds)
    ds.PatientID = pseudo
    ds.PatientName = pseudo
    decoded_from = cleaned.decoded_from if cleaned is not None else ""
    _record_method(ds, config.options, decoded_from)
    _new_file_meta(ds)
    if cleaned is not None:
        walker.counts["pixels_cleaned"] += 1
        if decoded_from:
            walker.counts["pixels_decoded"] += 1
    report = DeidReport(
        actions=dict(Counter(walker.counts)),
        patient_pseudonym=pseudo,
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
    )
    return DeidOutcome(ds, report, identity)


def _record_method(ds: Dataset, options: frozenset[str], decoded_from: str = "") -> None:
    codes = method_codes(options)
    ds.PatientIdentityRemoved = "YES"
    methods = [f"{EDITION} Annex E"] + [m for _, m in codes]
    if decoded_from:  # the transfer syntax changed (LO: at most 64 characters)
        methods.append(f"Clean Pixel Data: decoded from {decoded_from}"[:64])
    ds.DeidentificationMethod = methods
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if FULL_DATES in options:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif MODIFIED_DATES in options:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def _new_file_meta(ds: Dataset) -> None:
    old = getattr(ds, "file_meta", None)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    syntax = old.get("TransferSyntaxUID") if old is not None else None
    if syntax is not None:
        meta.TransferSyntaxUID = syntax
    ds.file_meta = meta


def deidentify(ds: Dataset, config: DeidConfig) -> DeidOutcome:
    """De-identify a copy of `ds` (PS3.15 Annex E); `ds` itself is left unchanged."""
    return _deidentify_in_place(copy.deepcopy(ds), config)


def deidentify_bytes(
    data: bytes, config: DeidConfig
) -> tuple[bytes | None, DeidReport, dict[str, str]]:
    """Part 10 bytes in, de-identified Part 10 bytes out (None when quarantined).

    Returns (bytes, report, original identity); all picklable, for a process pool.
    """
    ds = dcmread(BytesIO(data))
    outcome = _deidentify_in_place(ds, config)
    if outcome.dataset is None:
        return None, outcome.report, outcome.identity
    # PS3.10 7.1 leaves the 128-byte preamble to applications (TIFF headers, vendor
    # data): it may carry identity, so the output's is zeroed
    outcome.dataset.preamble = b"\x00" * 128
    return writer.encode(outcome.dataset), outcome.report, outcome.identity
