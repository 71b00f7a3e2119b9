"""Part 10 encoding of a de-identified dataset, byte for byte as pydicom writes it.

`encode(ds)` gives the bytes of `ds.save_as(out, enforce_file_format=True)`
(pydicom 3, PS3.10 7.1: preamble, "DICM", File Meta Information, data set), but
writes the elements pydicom left raw (read, never converted: most of a kept
instance) straight from their read bytes: tag, VR, length and value, with no
per-element buffer; so too empty values, single ASCII values of the VRs pydicom
writes as plain strings, explicit VR sequences and the File Meta Information the
engine builds. Every other element, and every case off the common path (other
transfer syntaxes, a changed character set or encoding, undefined lengths, values
too long for a 16-bit length), goes through pydicom's own writers, so the output
is the same in every case.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import cache
from io import BytesIO
from typing import cast

from pydicom import __version_info__
from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import (
    write_data_element,
    write_dataset,
    write_file_meta_info,
)
from pydicom.tag import ItemDelimiterTag, ItemTag, SequenceDelimiterTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

_ENCODINGS = {ExplicitVRLittleEndian: (False, True), ImplicitVRLittleEndian: (True, True)}
_LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
_SHORT = struct.Struct("<HH2sH")  # explicit VR, 16-bit length
_LONG = struct.Struct("<HH2s2xL")  # explicit VR, 32-bit length
_IMPLICIT = struct.Struct("<HHL")
_UNDEFINED = 0xFFFFFFFF
_ITEM = struct.pack("<HHL", ItemTag >> 16, ItemTag & 0xFFFF, _UNDEFINED)
_ITEM_END = struct.pack("<HHL", ItemDelimiterTag >> 16, ItemDelimiterTag & 0xFFFF, 0)
_SEQ_END = struct.pack("<HHL", SequenceDelimiterTag >> 16, SequenceDelimiterTag & 0xFFFF, 0)
_DEFAULT_ENCODING = "iso8859"
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI"})  # pydicom's write_string
_META_TAGS = frozenset({0x00020002, 0x00020003, 0x00020010})
_META_VERSION = _LONG.pack(2, 1, b"OB", 2) + b"\x00\x01"


def encode(ds: Dataset) -> bytes:
    """`ds` as Part 10 bytes, identical to pydicom's `save_as(..., enforce_file_format=True)`.

    Unlike `save_as`, may update `ds.file_meta` (Media Storage UIDs, and the elements
    `validate_file_meta` adds when pydicom writes it): meant for a dataset about to be
    dropped, as in `deidentify_bytes`.
    """
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    encoding = _ENCODINGS.get(syntax) if syntax is not None else None
    preamble = getattr(ds, "preamble", None) or b"\x00" * 128
    if (
        meta is None
        or encoding is None
        or len(preamble) != 128
        or any(x >> 16 in (0, 2) for x in ds._dict)
    ):
        out = BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()
    ds_class, ds_instance = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    meta_class = meta.get("MediaStorageSOPClassUID")
    if meta_class is None or (ds_class and ds_class != meta_class):
        meta.MediaStorageSOPClassUID = ds_class
    meta_instance = meta.get("MediaStorageSOPInstanceUID")
    if meta_instance is None or (ds_instance and ds_instance != meta_instance):
        meta.MediaStorageSOPInstanceUID = ds_instance
    if "PixelData" in ds:
        ds["PixelData"].is_undefined_length = False  # native pixel data (PS3.5 A.4)
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = encoding
    fp.write(preamble)
    fp.write(b"DICM")
    head = _meta_bytes(meta)
    if head is None:
        write_file_meta_info(fp, meta, enforce_standard=True)
    else:
        fp.write(head)
    _write_dataset(fp, ds, _DEFAULT_ENCODING, encoding)
    return fp.getvalue()


@cache
def _meta_tail() -> bytes:
    """(0002,0012) and (0002,0013) as pydicom's `validate_file_meta` adds and writes them."""
    meta = FileMetaDataset()
    meta.ImplementationClassUID = UID(PYDICOM_IMPLEMENTATION_UID)
    meta.ImplementationVersionName = f"PYDICOM {'.'.join(__version_info__)}"
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = False, True
    write_dataset(fp, meta)
    return fp.getvalue()


def _meta_bytes(meta: Dataset) -> bytes | None:
    """The File Meta Information group as pydicom writes it for the three elements the
    engine sets (PS3.10 7.1); None for any other content (pydicom writes it)."""
    if set(meta._dict) != _META_TAGS:
        return None
    body = [_META_VERSION]
    for tag in sorted(meta._dict):
        value = meta._dict[tag].value
        if not isinstance(value, str) or not value or not value.isascii() or "\\" in value:
            return None
        data = value.encode() + (b"\x00" if len(value) % 2 else b"")
        body.append(_SHORT.pack(2, tag & 0xFFFF, b"UI", len(data)) + data)
    body.append(_meta_tail())
    data = b"".join(body)
    return _SHORT.pack(2, 0, b"UL", 4) + struct.pack("<L", len(data)) + data


def _write_dataset(
    fp: DicomBytesIO,
    ds: Dataset,
    parent_encoding: str | list[str],
    encoding: tuple[bool, bool],
) -> None:
    """pydicom's `write_dataset`, with raw elements and sequences written directly."""
    if encoding != ds.original_encoding or ds.original_character_set != ds._character_set:
        write_dataset(fp, ds, parent_encoding)  # re-encoding needed: pydicom's path
        return
    implicit = encoding[0]
    charset = ds.get("SpecificCharacterSet", parent_encoding)
    write = fp.write
    elements = ds._dict
    for tag in sorted(elements):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group length (PS3.5 7.2)
        elem = elements[tag]
        if elem.is_raw:
            if not _write_raw(write, cast(RawDataElement, elem), implicit):
                write_data_element(fp, elem, charset)
        elif elem.VR == "SQ" and not implicit:
            _write_sequence(fp, cast(DataElement, elem), charset, encoding)
        elif not _write_plain(write, cast(DataElement, elem), implicit):
            write_data_element(fp, elem, charset)


def _write_raw(write: Callable[[bytes], object], elem: RawDataElement, implicit: bool) -> bool:
    """Write a raw element as read; False (nothing written) when pydicom must do it."""
    value, vr, tag = elem.value, elem.VR, int(elem.tag)
    if not isinstance(value, bytes) or elem.length == _UNDEFINED:
        return False
    size = len(value)
    if implicit:
        head = _IMPLICIT.pack(tag >> 16, tag & 0xFFFF, size)
    elif not isinstance(vr, str) or len(vr) != 2:
        return False
    elif vr in _LONG_VRS:
        head = _LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), size)
    elif size > 0xFFFF:
        return False  # pydicom rewrites it as UN
    else:
        head = _SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), size)
    write(head)
    write(value)
    return True


def _write_plain(write: Callable[[bytes], object], elem: DataElement, implicit: bool) -> bool:
    """Write an empty value, or one ASCII string of a VR pydicom writes as plain text;
    False (nothing written) for anything else."""
    vr, value = elem.VR, elem.value
    if vr == "SQ" or not isinstance(vr, str) or len(vr) != 2 or elem.is_undefined_length:
        return False
    if value is None or (isinstance(value, str) and not value):
        data = b""
    elif vr in _ASCII_VRS and isinstance(value, str) and value.isascii():
        data = value.encode() + ((b"\x00" if vr == "UI" else b" ") if len(value) % 2 else b"")
    else:
        return False
    tag = int(elem.tag)
    if implicit:
        write(_IMPLICIT.pack(tag >> 16, tag & 0xFFFF, len(data)))
    elif vr in _LONG_VRS:
        write(_LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(data)))
    else:
        write(_SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(data)))
    write(data)
    return True


def _write_sequence(
    fp: DicomBytesIO, elem: DataElement, charset: str | list[str], encoding: tuple[bool, bool]
) -> None:
    """An explicit VR sequence element, as pydicom's `write_data_element` writes it."""
    tag = int(elem.tag)
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = encoding
    encodings = convert_encodings(charset or [_DEFAULT_ENCODING])
    for item in elem.value:
        buffer.write(_ITEM)
        start = buffer.tell()
        _write_dataset(buffer, item, encodings, encoding)
        if getattr(item, "is_undefined_length_sequence_item", False):
            buffer.write(_ITEM_END)
        else:
            end = buffer.tell()
            buffer.seek(start - 4)
            buffer.write_UL(end - start)
            buffer.seek(end)
    value = buffer.getvalue()
    undefined = elem.is_undefined_length
    fp.write(_LONG.pack(tag >> 16, tag & 0xFFFF, b"SQ", _UNDEFINED if undefined else len(value)))
    fp.write(value)
    if undefined:
        fp.write(_SEQ_END)
