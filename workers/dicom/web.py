"""DICOMweb views of one Part 10 instance: its metadata as DICOM JSON (bulk data by
reference) and its frames. Pure: bytes in, values out."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import cv2
import numpy as np
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


def metadata(part10: bytes, study_url: str) -> dict[str, Any]:
    """The instance's attributes as DICOM JSON; binary values over BULK_THRESHOLD are a
    BulkDataURI under the instance's URL (`study_url`/series/<uid>/instances/<uid>; pixel
    data: its frames), the transfer syntax added. One parse per instance."""
    ds = _read(part10)
    series, sop = ds.get("SeriesInstanceUID", ""), ds.get("SOPInstanceUID", "")
    instance_url = f"{study_url}/series/{series}/instances/{sop}"

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


def bulkdata(part10: bytes, tag: int) -> bytes:
    """The value of a top-level binary element (a `BulkDataURI` of `metadata`);
    NotAnImage when the instance has no such element."""
    ds = _read(part10)
    element = ds.get(tag)
    if element is None or element.VR not in BINARY_VRS or element.value is None:
        raise NotAnImage(f"no bulk data element {tag:08X}")
    value = element.value
    return bytes(value) if isinstance(value, bytes | bytearray) else b""


EXPLICIT_LE = "1.2.840.10008.1.2.1"
ANY = "*"


def frames(part10: bytes, numbers: list[int], wanted: str = ANY) -> tuple[list[bytes], str]:
    """Frames `numbers` (1-based) of the instance and their transfer syntax UID: as stored
    when `wanted` is "*" or the stored syntax, decoded to Explicit VR Little Endian when
    that is wanted. NotAnImage when the instance holds no pixel data or fewer frames;
    NotAcceptable for another syntax (no transcoding between compressed syntaxes)."""
    ds = _read(part10)
    if "PixelData" not in ds:
        raise NotAnImage("the instance holds no pixel data")
    syntax = str(ds.file_meta.TransferSyntaxUID) if ds.file_meta else EXPLICIT_LE
    count = int(ds.get("NumberOfFrames") or 1)
    if any(not 1 <= n <= count for n in numbers):
        raise NotAnImage(f"the instance has {count} frame(s)")
    encapsulated = pydicom.uid.UID(syntax).is_encapsulated
    if wanted not in (ANY, syntax) and not (wanted == EXPLICIT_LE and encapsulated):
        raise NotAcceptable(f"frames are sent as stored ({syntax}) or decoded ({EXPLICIT_LE})")
    if encapsulated and wanted == EXPLICIT_LE:
        pixels = ds.pixel_array
        stack = pixels if count > 1 else pixels[None, ...]
        return [stack[n - 1].tobytes() for n in numbers], EXPLICIT_LE
    data: bytes = ds.PixelData
    if encapsulated:
        all_frames = list(generate_frames(data, number_of_frames=count))
        return [all_frames[n - 1] for n in numbers], syntax
    size = len(data) // count
    return [data[(n - 1) * size : n * size] for n in numbers], syntax


class NotAcceptable(ValueError):
    """The client asked for a representation this gateway does not produce."""


def rendered(part10: bytes, frame: int = 1, size: int | None = None, png: bool = False) -> bytes:
    """One frame as a JPEG (or PNG) for display: the instance's window when it has one,
    else its full range; greyscale or RGB; scaled so its longer side is at most `size`."""
    ds = _read(part10)
    if "PixelData" not in ds:
        raise NotAnImage("the instance holds no pixel data")
    count = int(ds.get("NumberOfFrames") or 1)
    if not 1 <= frame <= count:
        raise NotAnImage(f"the instance has {count} frame(s)")
    pixels = ds.pixel_array
    image = np.asarray(pixels[frame - 1] if count > 1 else pixels, dtype=np.float64)
    if image.ndim == 2:
        image = image * float(ds.get("RescaleSlope", 1) or 1) + float(
            ds.get("RescaleIntercept", 0) or 0
        )
        center, width = _window(ds, image)
        low = center - width / 2
        image = np.clip((image - low) / max(width, 1e-6), 0.0, 1.0) * 255.0
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            image = 255.0 - image
    else:
        top = float(image.max()) or 1.0
        image = image / top * 255.0
        image = image[..., ::-1]  # OpenCV writes BGR
    out: Any = image.astype(np.uint8)
    if size is not None and max(out.shape[:2]) > size:
        scale = size / max(out.shape[:2])
        shape = (max(1, round(out.shape[1] * scale)), max(1, round(out.shape[0] * scale)))
        out = cv2.resize(out, shape, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".png" if png else ".jpg", out)
    if not ok:
        raise NotAnImage("the frame could not be encoded")
    return bytes(encoded)


def _window(ds: pydicom.Dataset, image: np.ndarray) -> tuple[float, float]:
    def first(value: object) -> float | None:
        if value is None:
            return None
        if isinstance(value, list | tuple | pydicom.multival.MultiValue):
            return float(value[0]) if len(value) else None
        return float(value)  # type: ignore[arg-type]

    center, width = first(ds.get("WindowCenter")), first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        return center, width
    low, high = float(image.min()), float(image.max())
    return (low + high) / 2, max(high - low, 1.0)
