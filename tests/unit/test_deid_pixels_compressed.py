"""Clean Pixel Data on every pixel layout pydicom decodes (PS3.15 E.3.1).

Compressed pixel data (JPEG baseline and lossless, JPEG-LS, JPEG 2000, RLE) is decoded,
cleaned and written back as Explicit VR Little Endian: the output's pixels are exactly
the decoded source's outside the blanked bands (no lossy step added), a lossy source
stays marked lossy with its ratio and method, and the change of transfer syntax is
recorded. The files are pydicom's own test files, shipped inside its wheel.
"""

from __future__ import annotations

import copy
import warnings
from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import ExplicitVRLittleEndian, JPEGExtended12Bit

from workers.dicom.deid import DeidConfig, deidentify, deidentify_bytes
from workers.dicom.deid.validate import dciodvfy_errors, process_instance

KEY = "unit-test-key-0123456789abcdef"
CLEAN = DeidConfig(KEY, "proj", frozenset({"CleanPixelData"}))
BAND = 0.10


def load(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert path is not None, f"{name} ships with pydicom"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(path)


def flagged(ds: Dataset) -> bytes:
    """`ds` as Part 10 bytes, marked as carrying burned-in text (so it must be cleaned)."""
    ds = copy.deepcopy(ds)
    ds.BurnedInAnnotation = "YES"
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def expected_pixels(ds: Dataset) -> np.ndarray:
    """The source decoded (as pydicom decodes it, YCbCr as RGB) with the bands blanked."""
    arr = np.array(ds.pixel_array, copy=True)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    view = arr if frames > 1 else arr[np.newaxis, ...]
    rows = int(ds.Rows)
    height = max(1, round(rows * BAND))
    view[:, :height, ...] = 0
    view[:, rows - height :, ...] = 0
    return arr


# name, lossy source
COMPRESSED = [
    ("SC_rgb_jpeg_dcmtk.dcm", True),  # JPEG Baseline, YBR_FULL
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", True),  # JPEG Baseline, YBR_FULL_422
    ("examples_ybr_color.dcm", True),  # US multi-frame, JPEG Baseline, 30 frames
    ("SC_rgb_jpeg_gdcm.dcm", False),  # JPEG Lossless, SV1
    ("MR_small_jpeg_ls_lossless.dcm", False),  # JPEG-LS lossless, 16-bit signed
    ("JPEGLSNearLossless_16.dcm", True),  # JPEG-LS near-lossless, no lossy record
    ("MR_small_jp2klossless.dcm", False),  # JPEG 2000 lossless only
    ("JPEG2000.dcm", True),  # JPEG 2000 (lossy), 16-bit
    ("MR_small_RLE.dcm", False),  # RLE
    ("SC_rgb_rle_2frame.dcm", False),  # RLE, colour, two frames
]


@pytest.mark.parametrize(("name", "lossy"), COMPRESSED)
def test_compressed_pixel_data_is_decoded_cleaned_and_stored_uncompressed(
    name: str, lossy: bool
) -> None:
    source = load(name)
    syntax = str(source.file_meta.TransferSyntaxUID)
    out, report, _ = deidentify_bytes(flagged(source), CLEAN)
    assert out is not None, report.quarantined  # before: "compressed pixel data cannot ..."
    ds = dcmread(BytesIO(out))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert not ds["PixelData"].is_undefined_length
    assert ds.BurnedInAnnotation == "NO"
    np.testing.assert_array_equal(ds.pixel_array, expected_pixels(source))
    if int(source.SamplesPerPixel) == 3:
        assert ds.PhotometricInterpretation == "RGB" and ds.PlanarConfiguration == 0
    assert f"Clean Pixel Data: decoded from {syntax}" in list(ds.DeidentificationMethod)
    assert report.actions["pixels_decoded"] == 1 and report.actions["pixels_cleaned"] == 1
    if lossy:  # PS3.3 C.7.6.1.1.5: once lossy, always marked so, with ratio and method
        assert ds.LossyImageCompression == "01"
        assert ds.LossyImageCompressionMethod and ds.LossyImageCompressionRatio
        if "LossyImageCompressionRatio" in source:
            assert ds.LossyImageCompressionRatio == source.LossyImageCompressionRatio
    else:
        assert ds.get("LossyImageCompression") == source.get("LossyImageCompression")
        assert "LossyImageCompressionMethod" not in ds


def test_lossy_record_added_from_the_transfer_syntax() -> None:
    """JPEG-LS near-lossless with no Lossy Image Compression of its own: "01", the ISO
    method of JPEG-LS and the ratio of the compressed to the decoded size."""
    source = load("JPEGLSNearLossless_08.dcm")
    assert "LossyImageCompression" not in source
    out, _, _ = deidentify_bytes(flagged(source), CLEAN)
    assert out is not None
    ds = dcmread(BytesIO(out))
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == "ISO_14495_1"
    assert float(ds.LossyImageCompressionRatio) > 0


def test_lossless_jpeg2000_said_lossless_stays_lossless() -> None:
    """A JPEG 2000 (lossless only) source with Lossy Image Compression 00 stays 00."""
    source = load("examples_jpeg2k.dcm")
    assert source.LossyImageCompression == "00"
    out, _, _ = deidentify_bytes(flagged(source), CLEAN)
    assert out is not None
    assert dcmread(BytesIO(out)).LossyImageCompression == "00"


def test_compressed_ultrasound_passes_the_job_check() -> None:
    """What the job runs: a JPEG ultrasound cine with Clean Pixel Data comes out, re-reads
    and (where dicom3tools is installed) has no dciodvfy error its source did not have."""
    data = flagged(load("examples_ybr_color.dcm"))
    out, report, _ = process_instance(data, CLEAN)
    assert out is not None and report.quarantined is None
    errors = dciodvfy_errors(out)
    if errors is not None:
        assert errors <= (dciodvfy_errors(data) or set())


def test_without_the_option_compressed_burned_in_stays_quarantined() -> None:
    outcome = deidentify(load("examples_ybr_color.dcm"), DeidConfig(KEY, "proj"))
    assert outcome.dataset is None and outcome.report.quarantined == "modality US"


def test_12_bit_jpeg_extended_without_a_decoder_says_so() -> None:
    """pydicom refuses GDCM for 12-bit JPEG Extended; the only other decoder
    (pylibjpeg-libjpeg) is GPL-3.0 and not installed: quarantined, the reason names
    the transfer syntax. Decoded and cleaned wherever a decoder is present."""
    source = load("JPGExtended.dcm")
    out, report, _ = deidentify_bytes(flagged(source), CLEAN)
    decoder = get_decoder(JPEGExtended12Bit)
    if out is None:
        assert report.quarantined is not None
        assert report.quarantined.startswith("pixel data cannot be decoded (JPEG Extended")
    else:
        assert "pylibjpeg" in decoder.available_plugins


# -- native layouts the cleaner refused ----------------------------------------------------


def test_one_bit_pixel_data_is_cleaned_and_repacked() -> None:
    """Bits Allocated 1 (a binary segmentation): unpacked, blanked, packed again."""
    source = load("liver_1frame.dcm")
    assert source.BitsAllocated == 1 and source.pixel_array.any()
    out, report, _ = deidentify_bytes(flagged(source), CLEAN)
    assert out is not None, report.quarantined  # before: "pixel layout cannot be cleaned"
    ds = dcmread(BytesIO(out))
    assert ds.BitsAllocated == 1 and len(ds.PixelData) == len(source.PixelData)
    np.testing.assert_array_equal(ds.pixel_array, expected_pixels(source))


def test_native_ybr_full_422_is_cleaned_as_rgb() -> None:
    source = load("SC_ybr_full_422_uncompressed.dcm")
    out, report, _ = deidentify_bytes(flagged(source), CLEAN)
    assert out is not None, report.quarantined  # before: "pixel layout cannot be cleaned"
    ds = dcmread(BytesIO(out))
    assert ds.PhotometricInterpretation == "RGB"
    assert ds.LossyImageCompression == "01"  # as the source said
    np.testing.assert_array_equal(ds.pixel_array, expected_pixels(source))


def test_big_endian_pixel_data_is_cleaned_and_written_little_endian() -> None:
    """Explicit VR Big Endian (retired): the cleaned values are the source's, not bytes
    swapped (before, little endian bytes went out under the big endian syntax)."""
    source = load("MR_small_bigendian.dcm")
    out, _, _ = deidentify_bytes(flagged(source), CLEAN)
    assert out is not None
    ds = dcmread(BytesIO(out))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(ds.pixel_array, expected_pixels(source))


def test_pixel_data_without_an_image_description_says_why() -> None:
    """pydicom's nested private sequence example: 2 bytes of Pixel Data and no Image
    Pixel module (no Rows, Columns, Bits Allocated): no image to clean, said precisely."""
    source = load("nested_priv_SQ.dcm")
    source.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    source.SOPInstanceUID = "1.2.3.4"
    outcome = deidentify(source, CLEAN)
    assert outcome.dataset is None
    assert outcome.report.quarantined == (
        "pixel data cannot be cleaned: no Rows, Columns, BitsAllocated, SamplesPerPixel, "
        "PhotometricInterpretation"
    )
