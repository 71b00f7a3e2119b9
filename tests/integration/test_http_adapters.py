"""The HTTP adapters against real Orthanc servers: Orthanc REST and DICOMweb (dcm4chee dialect).

The same files go into both archives of a private stack; every query is run
through both adapters (and the DICOMweb adapter in its "orthanc" dialect over
Orthanc's own plugin), which must return the expected records and identical
records. Streaming a 500-instance study (peak memory) is tested for every
adapter in test_adapter_memory.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from io import BytesIO

import numpy as np
import pytest
import pytest_asyncio
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from gateway.core.errors import NotFound, NotSupported
from gateway.core.settings import SourceConfig
from gateway.devstack.stack import LocalStack
from gateway.sources import dicomjson as dj
from gateway.sources import normalize as n
from gateway.sources.base import (
    InstanceQuery,
    PacsSource,
    PatientQuery,
    PatientRecord,
    SeriesQuery,
    StudyQuery,
    StudyRecord,
)
from gateway.sources.dicomweb.source import DicomWebSource
from gateway.sources.http import multipart as mp
from gateway.sources.orthanc import records as rec
from gateway.sources.orthanc.source import OrthancSource, orthanc_id
from gateway.sources.registry import build_source

pytestmark = pytest.mark.integration

CT, MR, US = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.6.1"
SOP_CLASS = {"CT": CT, "MR": MR, "US": US}
ROOT = "1.2.826.0.1.3680043.10.1009"


def instance(
    patient: tuple[str, str, str, str],
    study: tuple[str, str, str, str],
    series: tuple[str, str, int],
    number: int,
    rows: int = 8,
) -> bytes:
    """A small Part 10 file (UTF-8 character set, explicit VR little endian)."""
    pid, name, birth, sex = patient
    study_key, date, desc, accession = study
    series_key, modality, series_number = series
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = pid, name, birth, sex
    ds.StudyInstanceUID = f"{ROOT}.{study_key}"
    ds.SeriesInstanceUID = f"{ROOT}.{study_key}.{series_key}"
    ds.SOPInstanceUID = f"{ROOT}.{study_key}.{series_key}.{number}"
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.StudyDate, ds.StudyTime, ds.StudyDescription = date, "101500", desc
    ds.AccessionNumber, ds.StudyID, ds.Modality = accession, "1", modality
    ds.SeriesNumber, ds.InstanceNumber = series_number, number
    ds.SeriesDescription = f"{modality} series {series_number}"
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = ((np.arange(rows * rows) + number) % 65536).astype(np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


P1 = ("P001", "Müller^Jürgen", "19800101", "M")
P2 = ("P002", "SMITH^John", "19700505", "M")
P3 = ("P003", "smithers^anna", "19900909", "F")
P4 = ("P004", "Smith^Jane", "19851212", "F")
P5 = ("P005", "Ωμέγα^Άλφα", "20000229", "O")
P6 = ("P006", "O'Brien^Pat Rick", "19750101", "M")
S1 = ("1", "20200115", "CT Thorax", "A001")
S2 = ("2", "20210315", "MR Brain", "A002")
S3 = ("3", "20230101", "CT Head", "A003")
S4 = ("4", "20220101", "US Abdomen", "A004")
S5 = ("5", "20191231", "CT Abdomen", "A005")
S6 = ("6", "20200229", "PET CT", "B006")
S7 = ("7", "20200601", "CT HEAD NECK", "B007")
LAYOUT = [  # patient, study, series (key, modality, number), instances
    (P1, S1, ("1", "CT", 1), 2),
    (P1, S1, ("2", "MR", 2), 1),
    (P2, S2, ("1", "MR", 1), 1),
    (P2, S3, ("1", "CT", 1), 1),
    (P3, S4, ("1", "US", 1), 1),
    (P4, S5, ("1", "CT", 1), 1),
    (P5, S6, ("1", "CT", 1), 1),
    (P6, S7, ("1", "CT", 1), 1),
]
FILES = [instance(p, s, se, n) for p, s, se, count in LAYOUT for n in range(1, count + 1)]


def uid(study: str, *rest: str) -> str:
    """The UID the layout gives a study, series or instance."""
    return ".".join([ROOT, study, *rest])


def sop_uid(data: bytes) -> str:
    """The SOP Instance UID of a Part 10 file."""
    return str(dcmread(BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sources(private_stack: LocalStack) -> AsyncIterator[dict[str, PacsSource]]:
    """Both adapters on a private stack, each archive loaded through its adapter."""
    info = private_stack.info
    assert info is not None
    configs = [
        SourceConfig(id="orthanc", kind="orthanc", url=info.orthanc_url, timeout_s=30),
        SourceConfig(
            id="dcm4chee", kind="dicomweb", dialect="dcm4chee", url=info.dcm4chee_url, timeout_s=30
        ),
    ]
    built = {c.id: build_source(c) for c in configs}
    assert isinstance(built["orthanc"], OrthancSource)
    assert isinstance(built["dcm4chee"], DicomWebSource)
    for source in built.values():
        result = await source.store(FILES)
        assert result.stored == tuple(sop_uid(f) for f in FILES)
        assert result.failed == ()
        assert result.bytes == sum(len(f) for f in FILES)
    # Orthanc's own DICOMweb plugin (dialect "orthanc") over the data stored through REST.
    plugin = SourceConfig(
        id="orthanc-dicomweb",
        kind="dicomweb",
        dialect="orthanc",
        url=info.orthanc_url + "/dicom-web",
        timeout_s=30,
    )
    built[plugin.id] = build_source(plugin)
    yield built
    for source in built.values():
        await source.aclose()


ADAPTERS = ["orthanc", "dcm4chee"]
READERS = [*ADAPTERS, "orthanc-dicomweb"]

PATIENT_CASES = [
    (PatientQuery(), ["P001", "P002", "P003", "P004", "P005", "P006"]),
    (PatientQuery(name="smith"), ["P002", "P004"]),
    (PatientQuery(name="smith*"), ["P002", "P003", "P004"]),
    (PatientQuery(name="SMITH^J*"), ["P002", "P004"]),
    (PatientQuery(name="sm?th^ja?e"), ["P004"]),
    (PatientQuery(name="müller"), ["P001"]),
    (PatientQuery(name="MÜLLER^JÜRGEN"), ["P001"]),
    (PatientQuery(name="ωμέγα*"), ["P005"]),
    (PatientQuery(name="o'brien^pat rick"), ["P006"]),
    (PatientQuery(patient_id="P001"), ["P001"]),
    (PatientQuery(patient_id="p001"), []),
    (PatientQuery(patient_id="P00?"), ["P001", "P002", "P003", "P004", "P005", "P006"]),
    (PatientQuery(birth_date="19800101"), ["P001"]),
    (PatientQuery(birth_date="-19791231"), ["P002", "P006"]),
    (PatientQuery(birth_date="19850101-19901231"), ["P003", "P004"]),
    (PatientQuery(birth_date="20000101-"), ["P005"]),
    (PatientQuery(name="smith*", birth_date="19800101-"), ["P003", "P004"]),
    (PatientQuery(limit=2, offset=1), ["P002", "P003"]),
    (PatientQuery(limit=0), []),
    (PatientQuery(offset=10), []),
]

STUDY_CASES = [
    (StudyQuery(), ["1", "2", "3", "4", "5", "6", "7"]),
    (StudyQuery(study_uids=(uid("5"), uid("1"), uid("99"))), ["1", "5"]),
    (StudyQuery(study_date="20200101-20201231"), ["1", "6", "7"]),
    (StudyQuery(study_date="20221231-"), ["3"]),
    (StudyQuery(study_date="-20191231"), ["5"]),
    (StudyQuery(modality="MR"), ["1", "2"]),
    (StudyQuery(modality="US"), ["4"]),
    (StudyQuery(patient_name="smith*"), ["2", "3", "4", "5"]),
    (StudyQuery(patient_name="SMITH"), ["2", "3", "5"]),
    (StudyQuery(patient_id="P002"), ["2", "3"]),
    (StudyQuery(description="CT*"), ["1", "3", "5", "7"]),
    (StudyQuery(description="CT HEAD NECK"), ["7"]),
    (StudyQuery(description="ct head"), []),
    (StudyQuery(accession_number="B00?"), ["6", "7"]),
    (StudyQuery(modality="CT", study_date="20200101-", patient_name="s*"), ["3"]),
    (StudyQuery(limit=3, offset=2), ["3", "4", "5"]),
    (StudyQuery(modality="CT", limit=2, offset=1), ["3", "5"]),
]


@pytest.mark.parametrize("adapter", READERS)
@pytest.mark.parametrize(("query", "expected"), PATIENT_CASES, ids=str)
async def test_find_patients(
    sources: dict[str, PacsSource], adapter: str, query: PatientQuery, expected: list[str]
) -> None:
    found = await sources[adapter].find_patients(query)
    assert [p.patient_id for p in found] == expected


@pytest.mark.parametrize("adapter", READERS)
@pytest.mark.parametrize(("query", "expected"), STUDY_CASES, ids=str)
async def test_find_studies(
    sources: dict[str, PacsSource], adapter: str, query: StudyQuery, expected: list[str]
) -> None:
    found = await sources[adapter].find_studies(query)
    assert [s.study_uid for s in found] == [uid(k) for k in expected]


@pytest.mark.parametrize("adapter", READERS)
async def test_records_are_normalised(sources: dict[str, PacsSource], adapter: str) -> None:
    source = sources[adapter]
    [patient] = await source.find_patients(PatientQuery(patient_id="P001"))
    assert (patient.name, patient.birth_date, patient.sex, patient.studies) == (
        "Müller^Jürgen",
        "19800101",
        "M",
        1,
    )
    [study] = await source.find_studies(StudyQuery(study_uids=(uid("1"),)))
    assert study.patient_name == "Müller^Jürgen"
    assert (study.study_date, study.study_time, study.description) == (
        "20200115",
        "101500",
        "CT Thorax",
    )
    assert (study.modalities, study.series_count, study.instance_count) == (("CT", "MR"), 2, 3)
    [p2] = await source.find_patients(PatientQuery(patient_id="P002"))
    assert p2.studies == 2


@pytest.mark.parametrize("adapter", READERS)
async def test_find_series(sources: dict[str, PacsSource], adapter: str) -> None:
    source = sources[adapter]
    one = await source.find_series(SeriesQuery(study_uids=(uid("1"),)))
    assert [(s.series_uid, s.modality, s.series_number, s.instance_count) for s in one] == [
        (uid("1", "1"), "CT", 1, 2),
        (uid("1", "2"), "MR", 2, 1),
    ]
    assert one[1].description == "MR series 2" and one[1].study_uid == uid("1")
    several = await source.find_series(SeriesQuery(study_uids=(uid("3"), uid("1"), uid("2"))))
    assert [s.series_uid for s in several] == [
        uid("1", "1"),
        uid("1", "2"),
        uid("2", "1"),
        uid("3", "1"),
    ]
    assert [s.study_uid for s in several] == [uid("1"), uid("1"), uid("2"), uid("3")]
    ct = await source.find_series(SeriesQuery(study_uids=(uid("1"), uid("2")), modality="CT"))
    assert [s.series_uid for s in ct] == [uid("1", "1")]
    picked = await source.find_series(
        SeriesQuery(study_uids=(uid("1"), uid("2")), series_uids=(uid("1", "2"), uid("2", "1")))
    )
    assert [s.series_uid for s in picked] == [uid("1", "2"), uid("2", "1")]
    assert await source.find_series(SeriesQuery(study_uids=(uid("99"),))) == []


@pytest.mark.parametrize("adapter", READERS)
async def test_find_instances(sources: dict[str, PacsSource], adapter: str) -> None:
    source = sources[adapter]
    found = await source.find_instances(InstanceQuery(study_uid=uid("1")))
    assert [(i.sop_instance_uid, i.series_uid, i.instance_number) for i in found] == [
        (uid("1", "1", "1"), uid("1", "1"), 1),
        (uid("1", "1", "2"), uid("1", "1"), 2),
        (uid("1", "2", "1"), uid("1", "2"), 1),
    ]
    assert [i.sop_class_uid for i in found] == [CT, CT, MR]
    assert {i.study_uid for i in found} == {uid("1")}
    by_series = await source.find_instances(
        InstanceQuery(study_uid=uid("1"), series_uids=(uid("1", "2"),))
    )
    assert [i.sop_instance_uid for i in by_series] == [uid("1", "2", "1")]
    by_sop = await source.find_instances(
        InstanceQuery(study_uid=uid("1"), sop_instance_uids=(uid("1", "1", "2"),))
    )
    assert [i.sop_instance_uid for i in by_sop] == [uid("1", "1", "2")]
    assert await source.find_instances(InstanceQuery(study_uid=uid("99"))) == []


@pytest.mark.parametrize("other", ["dcm4chee", "orthanc-dicomweb"])
async def test_adapters_return_identical_records(
    sources: dict[str, PacsSource], other: str
) -> None:
    orthanc, dicomweb = sources["orthanc"], sources[other]
    for pquery, _ in PATIENT_CASES:
        assert await orthanc.find_patients(pquery) == await dicomweb.find_patients(pquery), pquery
    for squery, _ in STUDY_CASES:
        assert await orthanc.find_studies(squery) == await dicomweb.find_studies(squery), squery
    all_studies = tuple(uid(k) for k in "1234567")
    series_query = SeriesQuery(study_uids=all_studies)
    assert await orthanc.find_series(series_query) == await dicomweb.find_series(series_query)
    for key in "1234567":
        iquery = InstanceQuery(study_uid=uid(key))
        assert await orthanc.find_instances(iquery) == await dicomweb.find_instances(iquery)


def _same_dataset(a: bytes, b: bytes) -> None:
    left, right = dcmread(BytesIO(a)), dcmread(BytesIO(b))
    assert left == right
    assert left.file_meta.TransferSyntaxUID == right.file_meta.TransferSyntaxUID
    assert left.PixelData == right.PixelData


@pytest.mark.parametrize("adapter", READERS)
async def test_retrieve_instance_round_trip(sources: dict[str, PacsSource], adapter: str) -> None:
    source = sources[adapter]
    original = FILES[1]
    chunks = [
        c async for c in source.retrieve_instance(uid("1"), uid("1", "1"), uid("1", "1", "2"))
    ]
    _same_dataset(b"".join(chunks), original)
    with pytest.raises(NotFound):
        async for _ in source.retrieve_instance(uid("1"), uid("1", "1"), uid("1", "1", "9")):
            pass


async def test_orthanc_fetches_a_listed_instance_by_the_id_it_learnt(
    sources: dict[str, PacsSource],
) -> None:
    """An instance listed by `find_instances` is fetched by the id Orthanc gave it: one
    request instead of a lookup and a fetch; an id gone stale (the instance deleted, or
    stored anew under another patient) falls back to the lookup."""
    source = sources["orthanc"]
    assert isinstance(source, OrthancSource)
    where = (uid("1"), uid("1", "1"), uid("1", "1", "2"))
    assert uid("1", "1", "2") in [
        i.sop_instance_uid for i in await source.find_instances(InstanceQuery(uid("1")))
    ]

    async def fetched() -> tuple[bytes, int]:
        before = source.stats.calls
        data = b"".join([c async for c in source.retrieve_instance(*where)])
        return data, source.stats.calls - before

    data, calls = await fetched()
    _same_dataset(data, FILES[1])
    assert calls == 1
    source._known[where] = "00000000-00000000-00000000-00000000-00000000"  # stale
    data, calls = await fetched()
    _same_dataset(data, FILES[1])
    assert calls == 3  # the stale id's 404, the lookup, the file
    data, calls = await fetched()  # the lookup's id is not learnt: a listing teaches ids
    assert calls == 2


async def test_orthanc_lists_a_known_series_without_a_lookup(
    sources: dict[str, PacsSource],
) -> None:
    """The instances of series listed before come from one request (the series ids are
    known); a stale series id falls back to the lookup, with the same answer."""
    source = sources["orthanc"]
    assert isinstance(source, OrthancSource)
    query = InstanceQuery(uid("1"), (uid("1", "1"),))
    await source.find_series(SeriesQuery((uid("1"),)))
    expected = [uid("1", "1", "1"), uid("1", "1", "2")]

    async def listed() -> tuple[list[str], int]:
        before = source.stats.calls
        found = [i.sop_instance_uid for i in await source.find_instances(query)]
        return found, source.stats.calls - before

    assert await listed() == (expected, 1)
    source._series[(uid("1"), uid("1", "1"))] = "00000000-00000000-00000000-00000000-00000000"
    assert await listed() == (expected, 3)  # the stale id's empty answer, the lookup, the list
    assert await listed() == (expected, 1)  # the lookup taught the id again


async def test_orthanc_finds_studies_by_the_ids_it_derives_from_known_patients(
    sources: dict[str, PacsSource],
) -> None:
    """With the patient IDs of the studies asked for (the key index's hint), the Orthanc
    adapter fetches them by the ids Orthanc derives from them: two bulk requests, the same
    records as a UID lookup; a UID without a hint, or a wrong hint, is looked up by UID:
    same answer again."""
    source = sources["orthanc"]
    assert isinstance(source, OrthancSource)
    uids = (uid("1"), uid("2"), uid("5"))
    plain = await source.find_studies(StudyQuery(study_uids=uids))
    assert [r.study_uid for r in plain] == sorted(uids)
    hints = tuple((r.study_uid, r.patient_id or "") for r in plain)
    for r in plain:  # Orthanc's own id of each study is the one the adapter derives
        [held] = await source._find("t", "Study", {"StudyInstanceUID": r.study_uid}, expand=False)
        assert held == orthanc_id(r.patient_id or "", r.study_uid)

    async def asked(known: tuple[tuple[str, str], ...]) -> tuple[list[StudyRecord], int]:
        before = source.stats.calls
        found = await source.find_studies(StudyQuery(study_uids=uids, known_patients=known))
        return found, source.stats.calls - before

    assert await asked(hints) == (plain, 2)  # no lookup: the studies, then their series
    wrong = ((uid("1"), "NOT-THE-PATIENT"), *hints[1:])
    found, calls = await asked(wrong)
    assert found == plain and calls == 3  # the one wrong hint looked up by UID
    found, calls = await asked(hints[1:])
    assert found == plain and calls == 3  # the one without a hint looked up by UID


@pytest.mark.parametrize("adapter", READERS)
async def test_retrieve_study_round_trip(sources: dict[str, PacsSource], adapter: str) -> None:
    source = sources[adapter]
    originals = {sop_uid(f): f for f in FILES}
    got = {sop_uid(f): f for f in [f async for f in source.retrieve_study(uid("1"))]}
    assert sorted(got) == [uid("1", "1", "1"), uid("1", "1", "2"), uid("1", "2", "1")]
    for key, data in got.items():
        _same_dataset(data, originals[key])
    one_series = [sop_uid(f) async for f in source.retrieve_study(uid("1"), [uid("1", "2")])]
    assert one_series == [uid("1", "2", "1")]
    with pytest.raises(NotFound):
        async for _ in source.retrieve_study(uid("99")):
            pass


async def test_orthanc_relays_its_dicomweb_plugins_answer(
    sources: dict[str, PacsSource], private_stack: LocalStack
) -> None:
    """A study or series from Orthanc's DICOMweb plugin, its multipart answer as it comes;
    without the plugin at the configured root: NotSupported (so the gateway composes the
    answer), remembered after one lookup; a study Orthanc lacks: NotFound."""
    source = sources["orthanc"]
    assert isinstance(source, OrthancSource)
    media, body = await source.relay_study(uid("1"), None)
    assert media.startswith("multipart/related")
    got = [sop_uid(part) async for _, part in mp.iter_parts(body, mp.boundary_of(media))]
    assert sorted(got) == [uid("1", "1", "1"), uid("1", "1", "2"), uid("1", "2", "1")]
    media, body = await source.relay_study(uid("1"), uid("1", "2"))
    parts = [p async for _, p in mp.iter_parts(body, mp.boundary_of(media))]
    assert [sop_uid(p) for p in parts] == [uid("1", "2", "1")]
    with pytest.raises(NotFound):
        await source.relay_study(uid("99"), None)
    with pytest.raises(NotFound):
        await source.relay_study("1.2/../x", None)

    assert private_stack.info is not None
    url = private_stack.info.orthanc_url

    def bare(root: str) -> OrthancSource:
        return OrthancSource(SourceConfig(id="bare", kind="orthanc", url=url, dicomweb_root=root))

    for root in ("/no-plugin-here", ""):
        relaying, retrieving = bare(root), bare(root)
        try:
            with pytest.raises(NotSupported):
                await relaying.relay_study(uid("1"), None)
            calls = relaying.stats.calls
            with pytest.raises(NotSupported):  # remembered: no request
                await relaying.relay_study(uid("1"), None)
            assert relaying.stats.calls == calls
            # a retrieval falls back to the REST API's files
            with pytest.raises(NotFound):  # a series the study lacks: not a missing plugin
                await anext(retrieving.retrieve_study(uid("1"), [uid("1", "9")]))
            files = [sop_uid(f) async for f in retrieving.retrieve_study(uid("1"))]
            assert sorted(files) == [uid("1", "1", "1"), uid("1", "1", "2"), uid("1", "2", "1")]
            with pytest.raises(NotSupported):  # which the relay then knows too
                await retrieving.relay_study(uid("1"), None)
        finally:
            await relaying.aclose()
            await retrieving.aclose()


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_store_again_and_garbage(sources: dict[str, PacsSource], adapter: str) -> None:
    source = sources[adapter]
    result = await source.store([FILES[0], b"not a dicom file", FILES[2]])
    assert result.stored == (sop_uid(FILES[0]), sop_uid(FILES[2]))
    assert result.failed == ("#1",)
    assert await source.store([]) == type(result)(stored=())


@pytest.mark.parametrize("adapter", READERS)
async def test_invalid_uids_match_nothing(sources: dict[str, PacsSource], adapter: str) -> None:
    source = sources[adapter]
    assert await source.find_studies(StudyQuery(study_uids=("1.2.*",))) == []
    mixed = await source.find_studies(StudyQuery(study_uids=("../x", uid("2"))))
    assert [s.study_uid for s in mixed] == [uid("2")]
    assert await source.find_series(SeriesQuery(study_uids=("../x",))) == []
    assert await source.find_series(SeriesQuery(study_uids=(uid("1"),), series_uids=("*",))) == []
    assert await source.find_instances(InstanceQuery(study_uid="*")) == []
    with pytest.raises(NotFound):
        async for _ in source.retrieve_instance(uid("1"), uid("1", "1"), "*"):
            pass
    with pytest.raises(NotFound):
        async for _ in source.retrieve_study("1.2/../3"):
            pass


@pytest.mark.parametrize("adapter", READERS)
async def test_ping(sources: dict[str, PacsSource], adapter: str) -> None:
    latency = await sources[adapter].ping()
    assert 0 < latency < 5000
    stats = sources[adapter].guard.stats  # type: ignore[attr-defined]
    assert stats.calls > 0 and stats.median_ms() is not None


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        " ",
        "A",
        " A",
        "A ",
        "A\x00",
        "Doe^John",
        "Doe^John^^",
        "Doe^John=Ή^Ά",
        "Ωμέγα",
        {"Alphabetic": "Doe^John"},
        {"Alphabetic": "Doe^ "},
        {"Ideographic": "X"},
        [{"Alphabetic": "A"}],
        "20240101",
        "2024-01-01",
        "2024.01.01",
        "10:15:00",
        "101500.5",
        ["A", "B"],
        7,
        "7",
        " 7 ",
    ],
)
def test_fast_normalisers_agree_with_normalize(value: object) -> None:
    """The fast normalisers of `dicomjson` (both HTTP adapters) give what `normalize` gives."""
    assert dj.text(value) == n.text(value)
    assert dj.person_name(value) == n.person_name(value)
    assert dj.date(value) == n.date(value)
    assert dj.time_(value) == n.time_(value)
    assert dj.integer(value) == n.integer(value)


def test_orthanc_records_are_reused_only_for_identical_values() -> None:
    records = rec.Records()
    tags = {"PatientID": "P1", "PatientName": "Doe^John "}
    item = {"ID": "a1", "MainDicomTags": tags, "Studies": ["s1"]}
    first = records.patient(item)
    assert first == PatientRecord(patient_id="P1", name="Doe^John", studies=1)
    assert records.patient({**item, "MainDicomTags": dict(tags)}) is first
    renamed = records.patient({**item, "MainDicomTags": {**tags, "PatientName": "Doe^Jane"}})
    assert renamed.name == "Doe^Jane"
    assert records.patient({**item, "Studies": ["s1", "s2"]}).studies == 2
    assert records.patient({**item, "ID": None}) == first  # no id: built, not kept
    odd = {"ID": "a2", "MainDicomTags": {"PatientID": ["P1", "P2"]}}
    assert records.patient(odd).patient_id == "P1\\P2"

    study = {"ID": "st", "MainDicomTags": {"StudyInstanceUID": "1.2"}, "Series": ["se"]}
    series = {"se": {"ID": "se", "MainDicomTags": {"Modality": "CT"}, "Instances": ["i1"]}}
    one = records.study(study, series)
    assert (one.modalities, one.series_count, one.instance_count) == (("CT",), 1, 1)
    assert records.study(dict(study), {"se": dict(series["se"])}) is one
    grown = {"se": {**series["se"], "Instances": ["i1", "i2"]}}
    assert records.study(study, grown).instance_count == 2
