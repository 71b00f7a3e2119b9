"""DICOMweb views of one instance (workers.dicom.web): metadata, frames in the transfer
syntax asked for, and rendered images; pydicom's own test files, compressed ones too."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from workers.dicom.web import (
    ANY,
    EXPLICIT_LE,
    NotAcceptable,
    NotAnImage,
    bulkdata,
    frames,
    metadata,
    rendered,
)


def _bytes(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(str(path)).read_bytes()


def test_metadata_refers_pixel_data_to_its_frames() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    meta = metadata(_bytes("CT_small.dcm"), "http://gw/dicomweb/studies/1")
    where = (
        f"http://gw/dicomweb/studies/1/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    )
    assert meta["7FE00010"] == {"vr": "OW", "BulkDataURI": f"{where}/frames/1"}
    assert meta["00020010"]["Value"] == ["1.2.840.10008.1.2.1"]
    assert meta["00280010"]["Value"] == [128]


def test_frames_as_stored_or_decoded() -> None:
    native = _bytes("CT_small.dcm")
    [frame], syntax = frames(native, [1], ANY)
    assert syntax == EXPLICIT_LE and len(frame) == 128 * 128 * 2
    with pytest.raises(NotAcceptable):
        frames(native, [1], "1.2.840.10008.1.2.4.90")
    with pytest.raises(NotAnImage):
        frames(native, [2], ANY)
    j2k = _bytes("MR_small_jp2klossless.dcm")
    [stored], stored_syntax = frames(j2k, [1], ANY)
    assert stored_syntax == "1.2.840.10008.1.2.4.90" and stored[:4] == b"\xff\x4f\xff\x51"
    [decoded], decoded_syntax = frames(j2k, [1], EXPLICIT_LE)
    expected = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm")).pixel_array
    assert decoded_syntax == EXPLICIT_LE and decoded == expected.tobytes()


def test_rendered_images() -> None:
    jpeg = rendered(_bytes("CT_small.dcm"))
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image.shape == (128, 128) and image.std() > 10, "a windowed greyscale image"
    png = rendered(_bytes("SC_rgb_jpeg_dcmtk.dcm"), size=32, png=True)
    assert png.startswith(b"\x89PNG")
    small = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert max(small.shape[:2]) == 32 and small.shape[2] == 3
    with pytest.raises(NotAnImage):
        rendered(_bytes("CT_small.dcm"), frame=3)


def test_bulk_data_by_reference_and_back() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.add_new(0x00420011, "OB", b"\x01\x02" * 1500)  # Encapsulated Document, 3000 bytes
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    meta = metadata(data, "http://gw/s")
    where = f"http://gw/s/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    assert meta["00420011"] == {"vr": "OB", "BulkDataURI": f"{where}/bulkdata/00420011"}
    assert bulkdata(data, 0x00420011) == b"\x01\x02" * 1500
    with pytest.raises(NotAnImage):
        bulkdata(data, 0x00100010)  # not binary
