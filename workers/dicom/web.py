"""DICOMweb views of one Part 10 instance: its metadata as DICOM JSON (bulk data by
reference) and its frames. Pure: bytes in, values out."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError

BULK_THRESHOLD = 1024  # bytes; longer binary values are sent by reference (BulkDataURI)
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}


class NotAnImage(ValueError):
    """The instance has no pixel data, or not the frame asked for."""


def _read(part10: bytes) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(BytesIO(part10), force=True)
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise ValueError(f"not a readable DICOM instance: {type(exc).__name__}") from None


def metadata(part10: bytes, instance_url: str) -> dict[str, Any]:
    """The instance's attributes as DICOM JSON; binary values over BULK_THRESHOLD are a
    BulkDataURI under `instance_url` (pixel data: its frames), the transfer syntax added."""
    ds = _read(part10)

    def bulk(element: DataElement) -> str:
        if element.tag == 0x7FE00010:
            return f"{instance_url}/frames/1"
        return f"{instance_url}/bulkdata/{element.tag:08X}"

    out: dict[str, Any] = ds.to_json_dict(
        bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=bulk
    )
    syntax = getattr(ds.file_meta, "TransferSyntaxUID", None) if ds.file_meta else None
    if syntax:
        out["00020010"] = {"vr": "UI", "Value": [str(syntax)]}
    return out


def frames(part10: bytes, numbers: list[int]) -> tuple[list[bytes], str]:
    """Frames `numbers` (1-based) of the instance and its transfer syntax UID; NotAnImage
    when it holds no pixel data or fewer frames."""
    ds = _read(part10)
    if "PixelData" not in ds:
        raise NotAnImage("the instance holds no pixel data")
    syntax = str(ds.file_meta.TransferSyntaxUID) if ds.file_meta else "1.2.840.10008.1.2.1"
    count = int(ds.get("NumberOfFrames") or 1)
    if any(not 1 <= n <= count for n in numbers):
        raise NotAnImage(f"the instance has {count} frame(s)")
    data: bytes = ds.PixelData
    if pydicom.uid.UID(syntax).is_encapsulated:
        all_frames = list(generate_frames(data, number_of_frames=count))
        return [all_frames[n - 1] for n in numbers], syntax
    size = len(data) // count
    return [data[(n - 1) * size : n * size] for n in numbers], syntax
