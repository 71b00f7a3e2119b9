"""DICOM Part 10 files (PS3.10) as bytes: what an adapter reads without parsing a whole file."""

from __future__ import annotations

from io import BytesIO

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from gateway.core.uids import is_uid
from gateway.sources import normalize as n

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
