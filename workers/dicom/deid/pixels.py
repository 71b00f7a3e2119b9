"""Burned-in identification in pixel data (DICOM PS3.15 E.3.1, Clean Pixel Data Option).

The attribute table cannot reach text burned into the pixels. An instance is
therefore *quarantined* (not exported) when it says so, Burned In Annotation
(0028,0301) = YES, or when its kind usually carries burned-in text: modality US
or a Secondary Capture SOP class (PS3.4 B.5), unless the Clean Pixel Data
Option is chosen.

What the option does here: it blanks (sets to 0) a horizontal band at the top and
one at the bottom of every frame, each `band` of the rows (10 % by default), where
ultrasound and secondary-capture devices write their header text, and then
records Burned In Annotation = NO. This is a fixed-region cleaning: whoever
chooses the option takes responsibility that no text lies outside those bands.
Only native (uncompressed) pixel data can be cleaned; anything else stays
quarantined.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
BURNING_MODALITIES = frozenset({"US"})


def quarantine_reason(ds: Dataset) -> str | None:
    """Why this instance may hold burned-in text, or None when it is presumed clean."""
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return "BurnedInAnnotation=YES"
    if str(ds.get("Modality", "")).strip().upper() in BURNING_MODALITIES:
        return "modality US"
    if str(ds.get("SOPClassUID", "")).startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary capture"
    return None


def clean_bands(ds: Dataset, band: float) -> str | None:
    """Blank the top and bottom `band` of every frame in place; the reason it could not, or None."""
    if "PixelData" not in ds:
        return None
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return "compressed pixel data cannot be cleaned"
    if int(ds.get("BitsAllocated", 0)) not in (8, 16, 32):
        return "pixel layout cannot be cleaned"
    if str(ds.get("PhotometricInterpretation", "")).startswith("YBR_FULL_422"):
        return "pixel layout cannot be cleaned"
    arr = np.array(ds.pixel_array, copy=True)
    rows = int(ds.Rows)
    height = max(1, round(rows * band))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    view = arr if frames > 1 else arr[np.newaxis, ...]
    view[:, :height, ...] = 0
    view[:, rows - height :, ...] = 0
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        ds.PlanarConfiguration = 0  # pixel_array is always colour-by-pixel
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    ds.BurnedInAnnotation = "NO"
    return None
