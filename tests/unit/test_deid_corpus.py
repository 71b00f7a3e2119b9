"""A PHI corpus of our own: every Table E.1-1 attribute with a marker value, then a scan.

Markers: text "PHIMARK" (with multibyte letters), the date 19471113 in DA/DT form,
4711 in times, numbers and UIDs (root 1.2.999.4711), bytes b"PHIMARK!". Private elements, a private
sequence and sequences three levels deep are added. After de-identification with
the Basic Profile no marker may remain in the parsed output at any depth, nor in
the raw bytes of the written file.
"""

from __future__ import annotations

import re
from io import BytesIO
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from workers.dicom.deid import DeidConfig, deidentify, rows

MARK = "PHIMARK"
MARK_DATE = "19471113"
MARK_ROOT = "1.2.999.4711"
MARK_TIME = "134711"  # numbers and times carry 4711
NAME = "PHIMARK^Jörg=山田^太郎"
CT = "1.2.840.10008.5.1.4.1.1.2"
KEY = "unit-test-key-0123456789abcdef"
_TEXT = {"LO", "LT", "SH", "ST", "UT", "UC"}


def marker(vr: str, n: int) -> Any:
    """A value for `vr` that carries a marker where the VR allows one."""
    if vr in _TEXT:
        return f"{MARK} {n} Ærø" if vr != "SH" else f"{MARK}{n}"[:16]
    if vr in ("CS", "AE"):
        return MARK
    if vr == "PN":
        return NAME
    if vr == "DA":
        return MARK_DATE
    if vr == "DT":
        return MARK_DATE + MARK_TIME
    if vr == "TM":
        return MARK_TIME
    if vr == "UI":
        return f"{MARK_ROOT}.{n}"
    if vr == "UR":
        return "http://phimark.example/"
    if vr in ("OB", "OW", "UN", "OD", "OF", "OL", "OV"):
        return b"PHIMARK!"
    if vr == "AS":
        return "047Y"
    if vr == "DS":
        return "4711.4711"
    if vr == "IS":
        return "4711"
    if vr in ("FL", "FD"):
        return 4711.4711
    return 4711  # US, SS, UL, SL, ...


def leaf_item(n: int, depth: int) -> Dataset:
    """A sequence item with marker values, nested `depth` more levels."""
    item = Dataset()
    item.PersonName = NAME  # (0040,A123) D
    item.InstitutionName = f"{MARK} {n}"  # X/Z/D
    item.PatientComments = f"{MARK} comment {n}"  # X
    item.StudyDate = MARK_DATE  # Z
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-1", "99X", "Some code"
    item.ReferencedSOPInstanceUID = f"{MARK_ROOT}.9{n}"
    item.ReferencedSOPClassUID = CT
    if depth > 0:
        item.ConceptNameCodeSequence = Sequence([leaf_item(n * 10 + 1, depth - 1)])
    return item


def corpus() -> Dataset:
    """Every concrete Table E.1-1 attribute, plus private data and deep sequences."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for n, row in enumerate(rows()):
        if "X" in row.tag or row.tag.startswith(("GGGG", "0002", "0000", "FFFA")):
            continue
        tag = int(row.tag, 16)
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        value = Sequence([leaf_item(n, 2)]) if vr == "SQ" else marker(vr, n)
        ds.add_new(tag, vr, value)
    ds.SOPClassUID, ds.Modality = CT, "CT"
    ds.PatientID, ds.PatientName = f"{MARK}-ID-1", NAME
    ds.add_new(0x60003000, "OW", b"PHIMARK!")  # overlay data
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x50000010, "US", 1)  # curve (retired)
    block = ds.private_block(0x0011, "PHI CORP 1.0", create=True)
    block.add_new(0x01, "LO", f"{MARK} private")
    block.add_new(0x02, "SQ", Sequence([leaf_item(7, 1)]))
    safe = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    safe.add_new(0x23, "DS", "1.5")  # on the safe-list (Table E.3.10-1)
    safe.add_new(0x30, "LO", f"{MARK} unsafe")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = MARK
    return ds


def values_of(ds: Dataset) -> list[str]:
    """Every element value at every depth (file meta included), as text."""
    out: list[str] = []
    meta = getattr(ds, "file_meta", None)
    for elem in [*(meta or []), *ds]:
        if elem.VR == "SQ":
            for item in elem.value:
                out += values_of(item)
        else:
            value = elem.value
            out.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    return out


def write(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def leaks(text: str) -> list[str]:
    found = re.findall(r"(?i)phimark|19471113|4711|jörg|山田", text)
    return sorted(set(found))


@pytest.fixture(scope="module")
def original() -> Dataset:
    return corpus()


def test_corpus_is_complete(original: Dataset) -> None:
    assert len(original) > 450
    raw = write(original)
    assert MARK.encode() in raw and MARK_DATE.encode() in raw
    assert leaks(" ".join(values_of(original)))


def test_no_marker_survives_parsed_or_raw(original: Dataset) -> None:
    outcome = deidentify(original, DeidConfig(KEY, "proj"))
    assert outcome.dataset is not None
    assert leaks(" ".join(values_of(outcome.dataset))) == []
    raw = write(outcome.dataset)
    assert leaks(raw.decode("latin-1")) == [] and leaks(raw.decode("utf-8", "replace")) == []
    reread = dcmread(BytesIO(raw))
    assert reread.PatientIdentityRemoved == "YES"
    assert leaks(" ".join(values_of(reread))) == []


def test_every_uid_replaced_and_valid(original: Dataset) -> None:
    ds = deidentify(original, DeidConfig(KEY, "proj")).dataset
    assert ds is not None
    uids = [v for v in values_of(ds) if re.fullmatch(r"[0-9.]+", v) and "." in v]
    assert uids
    for uid in uids:
        assert len(uid) <= 64
        assert re.fullmatch(r"2\.25\.[1-9][0-9]*", uid) or uid.startswith("1.2.840.10008."), uid
    assert ds.SOPClassUID == CT and ds.file_meta.MediaStorageSOPClassUID == CT
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in ds.file_meta


def test_private_removed_except_safe_list(original: Dataset) -> None:
    plain = deidentify(original, DeidConfig(KEY, "proj")).dataset
    assert plain is not None
    assert not [e for e in plain if e.tag.is_private]
    safe = deidentify(original, DeidConfig(KEY, "proj", frozenset({"RetainSafePrivate"}))).dataset
    assert safe is not None
    kept = {int(e.tag): e.value for e in safe if e.tag.is_private}
    block = safe.private_block(0x0019, "GEMS_ACQU_01")
    assert kept[block.get_tag(0x23)] == "1.5"
    assert block.get_tag(0x30) not in kept
    assert not any(int(t) >> 16 == 0x0011 for t in kept)  # unsafe creator block gone whole


def test_nested_sequences_three_deep(original: Dataset) -> None:
    ds = deidentify(original, DeidConfig(KEY, "proj")).dataset
    assert ds is not None
    assert "ReferencedImageSequence" not in ds  # X/Z/U* on a Type 3 of the CT IOD: X
    item = ds.ContentSequence[0]  # D: kept as a dummy structure, references renewed
    deep = item.ConceptNameCodeSequence[0].ConceptNameCodeSequence[0]
    assert deep.PersonName == "ANONYMIZED" and "PatientComments" not in deep
    assert deep.InstitutionName == "ANONYMIZED" and not deep.StudyDate
    assert deep.ReferencedSOPInstanceUID.startswith("2.25.")
    assert deep.ReferencedSOPClassUID == CT
    assert ds.ContentSequence[0].CodeMeaning == "ANONYMIZED"  # D: dummy structure


def test_caller_dataset_unchanged(original: Dataset) -> None:
    before = write(original)
    deidentify(original, DeidConfig(KEY, "proj", frozenset({"CleanDescriptors"})))
    assert write(original) == before


@pytest.mark.parametrize(
    "options",
    [
        frozenset(),
        frozenset({"CleanDescriptors", "CleanStructuredContent"}),
    ],
)
def test_the_job_path_leaks_nothing(original: Dataset, options: frozenset[str]) -> None:
    """The bytes-in, bytes-out path the job runs (its own writer), with options on."""
    from workers.dicom.deid import deidentify_bytes

    out, _, _ = deidentify_bytes(write(original), DeidConfig(KEY, "proj", options))
    assert out is not None
    assert leaks(out.decode("latin-1")) == [] and leaks(out.decode("utf-8", "replace")) == []
    assert leaks(" ".join(values_of(dcmread(BytesIO(out))))) == []


def test_modified_dates_shift_every_date_and_keep_times(original: Dataset) -> None:
    """PS3.15 E.3.6 with modified dates: dates move by one shift, times stay as they were."""
    from workers.dicom.deid import deidentify_bytes

    options = frozenset({"RetainLongitudinalTemporalInformationModifiedDates"})
    out, _, _ = deidentify_bytes(write(original), DeidConfig(KEY, "proj", options))
    assert out is not None
    ds = dcmread(BytesIO(out))
    text = " ".join(values_of(ds))
    assert MARK_DATE not in text and MARK_DATE not in out.decode("latin-1")
    assert ds.StudyTime == MARK_TIME and ds.StudyDate and ds.StudyDate != MARK_DATE
    assert not [m for m in leaks(text) if m != "4711"], "nothing else survives"
