"""Library logs and warnings never quote DICOM values."""

from __future__ import annotations

import logging
import warnings
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from gateway.core.logs import quiet_libraries


def _file_with_bad_uid() -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.StudyInstanceUID = "1.2.3.SECRETUID"
    ds.PatientName = "SECRET^PATIENT"
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_pydicom_quotes_no_values(caplog: pytest.LogCaptureFixture) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # writing it warns: that is the test's own doing
        data = _file_with_bad_uid()
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_libraries()
        with caplog.at_level(logging.DEBUG):
            ds = dcmread(BytesIO(data))
            assert str(ds.StudyInstanceUID) == "1.2.3.SECRETUID"
    text = caplog.text + " ".join(str(w.message) for w in caught)
    assert "SECRET" not in text


async def test_graphql_errors_are_logged_without_the_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from resolvers.schema import schema

    with caplog.at_level(logging.DEBUG):
        result = await schema.execute('{ patients(first: "SECRET^NAME") { totalCount } }')
    assert result.errors, "the literal has the wrong type"
    assert "SECRET" in result.errors[0].message, "the caller still sees what was wrong"
    assert caplog.records and "SECRET" not in caplog.text
