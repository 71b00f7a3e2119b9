"""Is a file one storable DICOM instance? The check an import makes of each uploaded file.

Two encodings are accepted:

- a DICOM Part 10 file (PS3.10 7.1): 128-byte preamble, "DICM", the File Meta
  Information (group 0002, explicit VR little endian), then the data set;
- a raw data set without preamble and meta, as some modalities and old exports write
  it: little endian, implicit or explicit VR (PS3.5 7.1, Annex A.1/A.2), starting at
  group 0008 (or a stray group 0002). Storing it needs a Part 10 file: `as_part10`
  adds the File Meta Information.

An instance must carry the four UIDs that place it (PS3.3 C.12.1 SOP Class and SOP
Instance UID, C.7.2.1 Study and C.7.3.1 Series Instance UID), each a valid UID (PS3.5
9.1). A truncated file is refused: an element whose value stops short of its length, a
partial element header at the end, or an undefined-length item without its delimiter
(PS3.5 7.5). Reasons never quote a value from the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from io import BytesIO

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
UNDEFINED_LENGTH = 0xFFFFFFFF
_RAW_GROUPS = (b"\x08\x00", b"\x02\x00")  # (0008,xxxx) or (0002,xxxx), little endian
_SHORT = ("end of file", "unexpected end", "truncated", "before delimiter")


class NotAnInstance(ValueError):
    """The file is not one storable DICOM instance; the message says why (no value)."""


@dataclass(frozen=True, slots=True)
class Instance:
    """What places a checked instance, and whether it is already a Part 10 file."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    part10: bool


def is_part10(data: bytes) -> bool:
    """True when `data` starts with a preamble and the "DICM" prefix (PS3.10 7.1)."""
    return data[128:132] == b"DICM"


def _looks_raw(data: bytes) -> bool:
    return len(data) >= 8 and data[:2] in _RAW_GROUPS


def _read(data: bytes, part10: bool) -> Dataset:
    """The whole data set (pixels included, so a cut anywhere is seen)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = dcmread(BytesIO(data), force=not part10)
        except (InvalidDicomError, EOFError) as exc:
            short = isinstance(exc, EOFError)
            raise NotAnInstance("truncated" if short else "not a DICOM file") from None
        except Exception:  # anything pydicom trips on: the file is not usable DICOM
            raise NotAnInstance("not a readable DICOM data set") from None
    if any(any(s in str(w.message).lower() for s in _SHORT) for w in caught):
        raise NotAnInstance("truncated (an item or sequence is not closed)")
    return ds


def _check_complete(ds: Dataset, size: int) -> None:
    """Refuse a data set whose bytes stop before its last element's declared end."""
    end = 0
    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        if not isinstance(elem, RawDataElement) or elem.length == UNDEFINED_LENGTH:
            continue
        if len(elem.value or b"") < elem.length:
            raise NotAnInstance("truncated (an element is cut short)")
        if elem.value_tell is not None:
            end = max(end, elem.value_tell + elem.length)
    if 0 < size - end < 8 and end:  # a partial element header after the last element
        raise NotAnInstance("truncated (a partial element at the end)")


def check(data: bytes) -> Instance:
    """The instance `data` holds; `NotAnInstance` naming the reason otherwise."""
    if not data:
        raise NotAnInstance("empty file")
    part10 = is_part10(data)
    if not part10 and not _looks_raw(data):
        raise NotAnInstance("not DICOM (no Part 10 preamble, not a data set)")
    ds = _read(data, part10)
    if part10 and not len(ds):
        raise NotAnInstance("truncated (no data set after the file meta)")
    _check_complete(ds, len(data))
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
        raise NotAnInstance("a DICOMDIR (a directory of files), not an instance")
    uids = {}
    for keyword in REQUIRED:
        try:
            value = ds.get(keyword)
        except Exception:  # a value pydicom cannot decode
            value = None
        if value is None or not str(value).strip():
            raise NotAnInstance(f"no {keyword}")
        text = str(value).strip()
        if not UID(text).is_valid:
            raise NotAnInstance(f"{keyword} is not a valid UID")
        uids[keyword] = text
    return Instance(
        sop_class_uid=uids["SOPClassUID"],
        sop_instance_uid=uids["SOPInstanceUID"],
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        part10=part10,
    )


def as_part10(data: bytes) -> bytes:
    """`data` as a Part 10 file: unchanged when it is one; a raw data set gets its File
    Meta Information (PS3.10 7.1) with the transfer syntax it was read in."""
    if is_part10(data):
        return data
    ds = dcmread(BytesIO(data), force=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    implicit = ds.original_encoding[0]
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
