"""Burned-in identification in pixel data (DICOM PS3.15 E.3.1, Clean Pixel Data Option).

The attribute table cannot reach text burned into the pixels. An instance is
therefore *quarantined* (not exported) when it says so, Burned In Annotation
(0028,0301) = YES, or when its kind usually carries burned-in text: modality US
or a Secondary Capture SOP class (PS3.4 B.5), or a visible light image (VL
photographs, endoscopy, microscopy, ophthalmic photography), unless the Clean Pixel
Data Option is chosen. An instance of such a kind without pixel data has nothing to
burn text into and is not quarantined.

What the option does here: it blanks a horizontal band at the top and one at the
bottom of every frame, each `band` of the rows (10 % by default), where
ultrasound and secondary-capture devices write their header text, and then
records Burned In Annotation = NO. This is a fixed-region cleaning: whoever
chooses the option takes responsibility that no text lies outside those bands.

Every layout pydicom decodes is cleaned (`clean_bands`): native pixel data of
any Bits Allocated (1 bit included, repacked), YBR_FULL_422, and compressed
pixel data (JPEG, JPEG-LS, JPEG 2000, HTJ2K and RLE, through the decoders the
project installs: GDCM, pylibjpeg with OpenJPEG, pydicom's own RLE). Pixel data
that is not native little endian is written back uncompressed, as Explicit VR
Little Endian: never re-compressed, so no lossy step is added (PS3.5 8.2). Colour
decoded from YCbCr comes back as RGB (as pydicom's and dcmtk's decoders give it).
When the source was lossy (a lossy transfer syntax, or Lossy Image Compression
already "01"), Lossy Image Compression stays "01" with its ratio and method
(PS3.3 C.7.6.1.1.5: an image once lossy compressed is always marked so); a ratio
or method the source did not record is added from its transfer syntax. The change
of transfer syntax is returned for the record (De-identification Method, see
`engine.py`). What cannot be cleaned stays quarantined, with the reason: pixel
data no decoder here reads (12-bit JPEG Extended: pydicom refuses GDCM for it,
and the only other decoder, pylibjpeg-libjpeg, is GPL-3.0), float pixel data,
and pixel data without the Image Pixel attributes that describe it (Rows,
Columns, Bits Allocated...: no image to clean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder, pack_bits
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    JPEG2000MC,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # and its multi-frame classes, .7.1 to .7.4
# VL (.77.1.x: endoscopic, microscopic, photographic, ophthalmic...): quarantined as the
# Secondary Capture prefix once matched them, now under their own name
VISIBLE_LIGHT = "1.2.840.10008.5.1.4.1.1.77."
BURNING_MODALITIES = frozenset({"US"})
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # Float, Double Float, Pixel Data
DEFLATED = "1.2.840.10008.1.2.1.99"
NATIVE_LE = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian, DEFLATED})
# Lossy Image Compression Method (0028,2114) by transfer syntax (PS3.3 C.7.6.1.1.5.1)
LOSSY_METHODS = {
    JPEGBaseline8Bit: "ISO_10918_1",
    JPEGExtended12Bit: "ISO_10918_1",
    JPEGLSNearLossless: "ISO_14495_1",
    JPEG2000: "ISO_15444_1",
    JPEG2000MC: "ISO_15444_1",
    HTJ2K: "ISO_15444_15",
}
# syntaxes that may be lossless too: lossy unless the source says "00"
MAYBE_LOSSY = frozenset({JPEG2000, JPEG2000MC, HTJ2K})
IMAGE_PIXEL = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PhotometricInterpretation")


@dataclass(frozen=True, slots=True)
class Cleaned:
    """What `clean_bands` did: why it could not clean (None: cleaned, or nothing to clean),
    and the transfer syntax the pixel data was decoded from ("" when it stayed native)."""

    reason: str | None = None
    decoded_from: str = ""


def has_pixels(ds: Dataset) -> bool:
    """Whether the instance holds pixel data of any kind (integer, float, double)."""
    return any(tag in ds for tag in PIXEL_TAGS)


def quarantine_reason(ds: Dataset) -> str | None:
    """Why this instance may hold burned-in text, or None when it is presumed clean."""
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return "BurnedInAnnotation=YES"
    if not has_pixels(ds):
        return None  # no pixels: nothing burned in
    if str(ds.get("Modality", "")).strip().upper() in BURNING_MODALITIES:
        return "modality US"
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == SECONDARY_CAPTURE or sop_class.startswith(SECONDARY_CAPTURE + "."):
        return "secondary capture"
    if sop_class.startswith(VISIBLE_LIGHT):
        return "visible light image"
    return None


def clean_bands(ds: Dataset, band: float) -> Cleaned:
    """Blank the top and bottom `band` of every frame in place (see module doc)."""
    if "PixelData" not in ds:
        if has_pixels(ds):
            return Cleaned("float pixel data cannot be cleaned")
        return Cleaned()
    missing = [k for k in IMAGE_PIXEL if k not in ds]
    if missing:
        return Cleaned(f"pixel data cannot be cleaned: no {', '.join(missing)}")
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str((meta.get("TransferSyntaxUID") if meta is not None else None) or ""))
    if not syntax:
        syntax = ImplicitVRLittleEndian  # as pydicom read it
    try:
        decoder = get_decoder(syntax)
        arr, info = decoder.as_array(ds)  # as_rgb by default: YCbCr comes back as RGB
    except Exception as exc:  # no decoder, or the data does not decode: say which syntax
        name = syntax.name if syntax.is_transfer_syntax else "unknown transfer syntax"
        return Cleaned(f"pixel data cannot be decoded ({name}: {type(exc).__name__})")
    arr = np.array(arr, copy=True)
    rows = int(info["rows"])
    frames = int(info.get("number_of_frames") or 1)
    samples = int(info["samples_per_pixel"])
    view = arr if frames > 1 else arr[np.newaxis, ...]
    height = max(1, round(rows * band))
    view[:, :height, ...] = 0
    view[:, rows - height :, ...] = 0
    bits = int(info["bits_allocated"])
    if bits == 1:
        data = pack_bits(arr)
    else:
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    if len(data) % 2:
        data += b"\x00"
    native = syntax in NATIVE_LE
    if not native:
        _keep_lossy_record(ds, syntax, len(data))
    ds.PixelData = data
    elem = ds["PixelData"]
    elem.VR = "OB" if bits <= 8 else "OW"
    elem.is_undefined_length = False
    ds.PhotometricInterpretation = str(info["photometric_interpretation"])
    if samples > 1:
        ds.PlanarConfiguration = int(info.get("planar_configuration", 0))  # colour-by-pixel
    if "NumberOfFrames" in ds or frames > 1:
        ds.NumberOfFrames = frames
    ds.BurnedInAnnotation = "NO"
    if native:
        return Cleaned()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return Cleaned(decoded_from=str(syntax))


def _keep_lossy_record(ds: Dataset, syntax: UID, uncompressed: int) -> None:
    """Lossy Image Compression (0028,2110) and its ratio and method, before the pixel data
    is replaced by its decoded form (PS3.3 C.7.6.1.1.5)."""
    said = str(ds.get("LossyImageCompression", "") or "").strip()
    lossy_syntax = syntax in LOSSY_METHODS and not (syntax in MAYBE_LOSSY and said == "00")
    if said != "01" and not lossy_syntax:
        return
    ds.LossyImageCompression = "01"
    if not lossy_syntax:
        return  # lossy before this (lossless) encoding: its record is the source's
    if not ds.get("LossyImageCompressionMethod"):
        ds.LossyImageCompressionMethod = LOSSY_METHODS[syntax]
    if not ds.get("LossyImageCompressionRatio"):
        compressed = max(1, len(ds.PixelData))
        ds.LossyImageCompressionRatio = f"{uncompressed / compressed:.2f}"[:16]
