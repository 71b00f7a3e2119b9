"""DICOM checks of an import (workers.dicom.intake): Part 10, raw data sets, refusals."""

from __future__ import annotations

from io import BytesIO

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import RLELossless

from tests.jobs_support import big_study
from workers.dicom.intake import NotAnInstance, as_part10, check

STUDY, FILES = big_study(2, seed=11, rows=32)
GOOD = FILES[0]


def _refusal(data: bytes) -> str:
    with pytest.raises(NotAnInstance) as caught:
        check(data)
    return str(caught.value)


def _raw(data: bytes, implicit: bool) -> bytes:
    ds = pydicom.dcmread(BytesIO(data))
    ds.file_meta, ds.preamble = FileMetaDataset(), None
    out = BytesIO()
    pydicom.dcmwrite(out, ds, implicit_vr=implicit, little_endian=True)
    return out.getvalue()


def _without(data: bytes, keyword: str) -> bytes:
    ds = pydicom.dcmread(BytesIO(data))
    delattr(ds, keyword)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_part10_file_is_one_instance() -> None:
    got = check(GOOD)
    ds = pydicom.dcmread(BytesIO(GOOD))
    assert got.part10 and got.study_uid == STUDY == ds.StudyInstanceUID
    assert (got.sop_instance_uid, got.series_uid) == (ds.SOPInstanceUID, ds.SeriesInstanceUID)
    assert got.sop_class_uid == ds.SOPClassUID
    assert as_part10(GOOD) is GOOD


@pytest.mark.parametrize("implicit", [True, False])
def test_a_raw_data_set_is_accepted_and_given_its_file_meta(implicit: bool) -> None:
    raw = _raw(GOOD, implicit)
    assert raw[128:132] != b"DICM"
    got = check(raw)
    assert not got.part10 and got.sop_instance_uid == check(GOOD).sop_instance_uid
    stored = as_part10(raw)
    assert check(stored).part10
    ds = pydicom.dcmread(BytesIO(stored))
    assert ds.file_meta.MediaStorageSOPInstanceUID == got.sop_instance_uid
    assert ds.file_meta.TransferSyntaxUID == (
        "1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1"
    )
    assert ds.PixelData == pydicom.dcmread(BytesIO(GOOD)).PixelData


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, not DICOM at all", b"%PDF-1.7\n" + bytes(500), bytes(128) + b"DICX" + bytes(50)],
)
def test_non_dicom_is_refused(data: bytes) -> None:
    reason = _refusal(data)
    assert "DICOM" in reason or "empty" in reason


@pytest.mark.parametrize("cut", [-3, -100, 700, 200, 140])
def test_truncated_files_are_refused(cut: int) -> None:
    assert "truncated" in _refusal(GOOD[:cut])


def test_a_truncated_raw_data_set_and_encapsulated_pixels_are_refused() -> None:
    assert "truncated" in _refusal(_raw(GOOD, True)[:-40])
    ds = pydicom.dcmread(BytesIO(GOOD))
    ds.compress(RLELossless)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    rle = out.getvalue()
    assert check(rle).part10
    assert "truncated" in _refusal(rle[:-30])


@pytest.mark.parametrize(
    "keyword", ["SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"]
)
def test_missing_uids_are_refused(keyword: str) -> None:
    assert _refusal(_without(GOOD, keyword)) == f"no {keyword}"


def test_an_invalid_uid_is_refused_without_quoting_it() -> None:
    ds = pydicom.dcmread(BytesIO(GOOD))
    ds.StudyInstanceUID = "1.2.03.PATIENT-NAME"
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    reason = _refusal(out.getvalue())
    assert reason == "StudyInstanceUID is not a valid UID" and "PATIENT" not in reason


def test_a_dicomdir_is_not_an_instance() -> None:
    ds = pydicom.dcmread(BytesIO(GOOD))
    del ds.SOPClassUID  # a DICOMDIR's class is in its file meta only
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert "DICOMDIR" in _refusal(out.getvalue())


def test_checks_hold_with_the_workers_quiet_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers silence pydicom's warnings and value validation; truncation is still seen."""
    import logging
    import warnings

    from gateway.core.logs import quiet_libraries

    settings = pydicom.config.settings
    monkeypatch.setattr(settings, "reading_validation_mode", settings.reading_validation_mode)
    for name in ("alembic", "httpx", "httpcore", "pynetdicom", "uvicorn.access", "pydicom"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    with warnings.catch_warnings():
        quiet_libraries()
        ds = pydicom.dcmread(BytesIO(GOOD))
        ds.compress(RLELossless)
        out = BytesIO()
        ds.save_as(out, enforce_file_format=True)
        assert "truncated" in _refusal(out.getvalue()[:-30])
        assert "truncated" in _refusal(GOOD[:-100])
        assert check(GOOD).part10
