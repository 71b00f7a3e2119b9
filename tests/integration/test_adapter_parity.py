"""Every adapter, the same data, the same queries: identical normalised records.

One private stack; the same 9 files (non-ASCII names in ISO_IR 192, names
differing only in case, date ranges, two modalities in one study) go into each
archive through that archive's own adapter:

- "orthanc": Orthanc REST (the reference every other adapter is compared to);
- "dcm4chee": DICOMweb, dcm4chee dialect, against the Orthanc playing DCM4CHEE;
- "orthanc-dicomweb": DICOMweb, orthanc dialect, over the same Orthanc's plugin;
- "dcmqrscp": DIMSE against dcmtk's dcmqrscp;
- "orthanc-dimse": DIMSE against the same Orthanc's DICOM port (C-FIND and C-GET
  allowed for any AE by `DicomAlwaysAllowFind/Get` in deploy/local/orthanc.json).

Each query must give the expected answer and records equal, field by field, to
the reference's. The one documented exception: dcmqrscp's index keeps neither
SeriesDescription nor SOPClassUID, so those two fields are set aside for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from io import BytesIO

import pytest
import pytest_asyncio
from pydicom import dcmread

from gateway.core.settings import SourceConfig
from gateway.devstack.stack import LocalStack
from gateway.sources.base import (
    InstanceQuery,
    InstanceRecord,
    PacsSource,
    PatientQuery,
    SeriesQuery,
    SeriesRecord,
    StudyQuery,
)
from gateway.sources.registry import build_source
from tests.integration.test_http_adapters import FILES, PATIENT_CASES, STUDY_CASES, sop_uid, uid

pytestmark = pytest.mark.integration

REFERENCE = "orthanc"
OTHERS = ["dcm4chee", "orthanc-dicomweb", "dcmqrscp", "orthanc-dimse"]
WITHOUT_DESCRIPTIONS = {"dcmqrscp"}  # no SeriesDescription, no SOPClassUID in its answers
STUDY_KEYS = "1234567"


def _dimse(source_id: str, port: int, aet: str) -> SourceConfig:
    return SourceConfig(
        id=source_id, kind="dimse", host="127.0.0.1", port=port, called_aet=aet, timeout_s=30
    )


def _configs(stack: LocalStack) -> list[SourceConfig]:
    info = stack.info
    assert info is not None
    return [
        SourceConfig(id="orthanc", kind="orthanc", url=info.orthanc_url, timeout_s=30),
        SourceConfig(
            id="dcm4chee", kind="dicomweb", dialect="dcm4chee", url=info.dcm4chee_url, timeout_s=30
        ),
        SourceConfig(
            id="orthanc-dicomweb",
            kind="dicomweb",
            dialect="orthanc",
            url=info.orthanc_url + "/dicom-web",
            timeout_s=30,
        ),
        _dimse("dcmqrscp", info.legacy_port, "DCMQRSCP"),
        _dimse("orthanc-dimse", info.orthanc_dicom, "ORTHANC"),
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sources(private_stack: LocalStack) -> AsyncIterator[dict[str, PacsSource]]:
    """Every adapter; each archive loaded once, through its own adapter."""
    built = {c.id: build_source(c) for c in _configs(private_stack)}
    for writer in ("orthanc", "dcm4chee", "dcmqrscp"):  # the others read those archives
        result = await built[writer].store(FILES)
        assert result.stored == tuple(sop_uid(f) for f in FILES), writer
        assert result.failed == ()
    yield built
    for source in built.values():
        await source.aclose()


def _series(adapter: str, records: list[SeriesRecord]) -> list[SeriesRecord]:
    if adapter in WITHOUT_DESCRIPTIONS:
        return [replace(r, description=None) for r in records]
    return records


def _instances(adapter: str, records: list[InstanceRecord]) -> list[InstanceRecord]:
    if adapter in WITHOUT_DESCRIPTIONS:
        return [replace(r, sop_class_uid=None) for r in records]
    return records


def test_every_kind_of_adapter_takes_part(sources: dict[str, PacsSource]) -> None:
    kinds = {s.config.kind for s in sources.values()}
    assert kinds == {"orthanc", "dicomweb", "dimse"}
    assert set(sources) == {REFERENCE, *OTHERS}


@pytest.mark.parametrize("adapter", OTHERS)
@pytest.mark.parametrize(("query", "expected"), PATIENT_CASES, ids=str)
async def test_patients(
    sources: dict[str, PacsSource], adapter: str, query: PatientQuery, expected: list[str]
) -> None:
    reference = await sources[REFERENCE].find_patients(query)
    found = await sources[adapter].find_patients(query)
    assert [p.patient_id for p in found] == expected
    assert found == reference


@pytest.mark.parametrize("adapter", OTHERS)
@pytest.mark.parametrize(("query", "expected"), STUDY_CASES, ids=str)
async def test_studies(
    sources: dict[str, PacsSource], adapter: str, query: StudyQuery, expected: list[str]
) -> None:
    reference = await sources[REFERENCE].find_studies(query)
    found = await sources[adapter].find_studies(query)
    assert [s.study_uid for s in found] == [uid(k) for k in expected]
    assert found == reference


SERIES_CASES = [
    SeriesQuery(study_uids=tuple(uid(k) for k in STUDY_KEYS)),
    SeriesQuery(study_uids=(uid("1"),)),
    SeriesQuery(study_uids=(uid("1"), uid("2")), modality="CT"),
    SeriesQuery(study_uids=(uid("1"), uid("2")), series_uids=(uid("1", "2"), uid("2", "1"))),
    SeriesQuery(study_uids=(uid("99"),)),
]


@pytest.mark.parametrize("adapter", OTHERS)
@pytest.mark.parametrize("query", SERIES_CASES, ids=str)
async def test_series(sources: dict[str, PacsSource], adapter: str, query: SeriesQuery) -> None:
    reference = await sources[REFERENCE].find_series(query)
    found = await sources[adapter].find_series(query)
    assert _series(adapter, found) == _series(adapter, reference)
    if query.study_uids == (uid("99"),):
        assert found == []
    else:
        assert found and all(s.instance_count for s in found)


INSTANCE_CASES = [
    *(InstanceQuery(study_uid=uid(k)) for k in STUDY_KEYS),
    InstanceQuery(study_uid=uid("1"), series_uids=(uid("1", "2"),)),
    InstanceQuery(study_uid=uid("1"), sop_instance_uids=(uid("1", "1", "2"),)),
    InstanceQuery(study_uid=uid("99")),
]


@pytest.mark.parametrize("adapter", OTHERS)
@pytest.mark.parametrize("query", INSTANCE_CASES, ids=str)
async def test_instances(
    sources: dict[str, PacsSource], adapter: str, query: InstanceQuery
) -> None:
    reference = await sources[REFERENCE].find_instances(query)
    found = await sources[adapter].find_instances(query)
    assert _instances(adapter, found) == _instances(adapter, reference)
    assert bool(found) == (query.study_uid != uid("99"))


@pytest.mark.parametrize("adapter", OTHERS)
async def test_counts(sources: dict[str, PacsSource], adapter: str) -> None:
    """Study, series and instance counts agree with the files stored."""
    studies = await sources[adapter].find_studies(StudyQuery())
    per_study = {s.study_uid: (s.series_count, s.instance_count) for s in studies}
    files = [dcmread(BytesIO(f), stop_before_pixels=True) for f in FILES]
    expected = {
        str(ds.StudyInstanceUID): (
            len(
                {
                    str(x.SeriesInstanceUID)
                    for x in files
                    if x.StudyInstanceUID == ds.StudyInstanceUID
                }
            ),
            sum(1 for x in files if x.StudyInstanceUID == ds.StudyInstanceUID),
        )
        for ds in files
    }
    assert per_study == expected
    patients = await sources[adapter].find_patients(PatientQuery())
    assert sum(p.studies or 0 for p in patients) == len(expected)


@pytest.mark.parametrize("adapter", [REFERENCE, *OTHERS])
async def test_retrieve_gives_the_stored_files(
    sources: dict[str, PacsSource], adapter: str
) -> None:
    sent = {sop_uid(f): dcmread(BytesIO(f)) for f in FILES[:3]}
    got = {}
    async for blob in sources[adapter].retrieve_study(uid("1")):
        ds = dcmread(BytesIO(blob))
        got[str(ds.SOPInstanceUID)] = ds
    assert set(got) == set(sent)
    for sop, ds in got.items():
        assert ds.PatientName == "Müller^Jürgen"
        assert ds.PixelData == sent[sop].PixelData
