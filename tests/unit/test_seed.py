"""Demo-data seeder: determinism, valid files, placement, ground truth and loading."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from gateway.devstack.seed import (
    DemoPlan,
    GroundTruth,
    SeedLoadError,
    build_demo,
    load_demo,
    read_truth,
    write_files,
    write_truth,
)
from gateway.devstack.seed.encode import IMPLEMENTATION_NAME, IMPLEMENTATION_UID, Value, format_ds
from gateway.devstack.seed.images import series_values, slice_position
from gateway.devstack.seed.people import misspell
from gateway.devstack.seed.pixels import frame
from gateway.sources.base import PacsSource, StoreResult

SOURCES = ("orthanc", "dcm4chee", "legacy")
SOP_CLASSES = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


@pytest.fixture(scope="module")
def plan() -> DemoPlan:
    return build_demo()


def _read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _held(plan: DemoPlan, source: str) -> set[str]:
    """SOP Instance UIDs the truth says `source` holds."""
    return {
        sop
        for study in plan.truth.studies
        for sops in study.instances.get(source, {}).values()
        for sop in sops
    }


def _digest(plan: DemoPlan, source: str) -> str:
    h = hashlib.sha256()
    for data in plan.iter_files(source):
        h.update(data)
    return h.hexdigest()


def test_same_seed_gives_identical_bytes_and_truth() -> None:
    a, b = build_demo(seed=7, patients=15), build_demo(seed=7, patients=15)
    assert a.truth == b.truth
    assert a.truth.to_json() == b.truth.to_json()
    for source in SOURCES:
        assert _digest(a, source) == _digest(b, source)


_DIGEST_SCRIPT = """
import hashlib
from gateway.devstack.seed import build_demo
plan = build_demo(seed=9, patients=12)
h = hashlib.sha256(plan.truth.to_json().encode())
for source in plan.sources:
    for data in plan.iter_files(source):
        h.update(data)
print(h.hexdigest())
"""


def test_output_does_not_depend_on_the_process() -> None:
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT], env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        digests.add(run.stdout.strip())
    assert len(digests) == 1


def test_different_seed_gives_different_data() -> None:
    a, b = build_demo(seed=7, patients=15), build_demo(seed=8, patients=15)
    assert a.truth.to_json() != b.truth.to_json()
    assert not {s.study_uid for s in a.truth.studies} & {s.study_uid for s in b.truth.studies}
    assert _digest(a, "dcm4chee") != _digest(b, "dcm4chee")


def test_global_random_state_is_untouched() -> None:
    random.seed(123)
    expected = random.random()
    random.seed(123)
    build_demo(seed=1, patients=5)
    assert random.random() == expected


def test_every_file_rereads_with_pixels_of_the_right_shape(plan: DemoPlan) -> None:
    for source in SOURCES:
        held: dict[str, str] = {}
        for data in plan.iter_files(source):
            ds = _read(data)
            assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
            held[ds.SOPInstanceUID] = ds.SeriesInstanceUID
            if ds.Modality in ("CT", "MR"):
                assert ds.SOPClassUID == SOP_CLASSES[ds.Modality]
                assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
                assert ds.pixel_array.dtype.name == "uint16"
                assert len(ds.ImagePositionPatient) == 3
                assert len(ds.ImageOrientationPatient) == 6
                assert float(ds.PixelSpacing[0]) > 0 and float(ds.SliceThickness) > 0
            else:
                assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3"
        assert set(held) == _held(plan, source)
        for study in plan.truth.studies:
            for series, sops in study.instances.get(source, {}).items():
                assert all(held[sop] == series for sop in sops)


def _pydicom_value(keyword: str, value: Value) -> object:
    if dictionary_VR(keyword) != "DS":
        return value
    if isinstance(value, list | tuple):
        return [format_ds(v) for v in value]
    return format_ds(cast(float, value))


def test_encoder_matches_pydicom_writer(plan: DemoPlan) -> None:
    study = next(s for s in plan.studies if not s.patient.name.isascii() and len(s.copies) > 1)
    source, copy = next(iter(study.copies.items()))
    series = study.series[0]
    k = next(i for i, u in enumerate(series.instance_uids) if u not in copy.missing)
    ours = next(d for d in plan.iter_files(source) if series.instance_uids[k].encode() in d)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in series_values(study, copy, series).items():
        setattr(ds, keyword, _pydicom_value(keyword, value))
    ds.SOPInstanceUID = series.instance_uids[k]
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [format_ds(v) for v in slice_position(series, k)]
    ds.SliceLocation = format_ds((k - (len(series.instance_uids) - 1) / 2) * series.slice_thickness)
    ds.PixelData = frame(series.modality, series.rows, series.columns, k, len(series.instance_uids))
    ds["PixelData"].VR = "OW"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(series.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(series.instance_uids[k])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_NAME
    ds.file_meta = meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    assert ours == buf.getvalue()
    again = io.BytesIO()
    pydicom.dcmwrite(again, _read(ours), enforce_file_format=True)
    assert ours == again.getvalue()


def test_placement_is_realistic(plan: DemoPlan) -> None:
    studies = plan.truth.studies
    per_count = Counter(len(s.sources) for s in studies)
    assert per_count[1] >= 1
    assert per_count[2] > len(studies) / 2
    pairs = Counter(tuple(s.sources) for s in studies if len(s.sources) == 2)
    assert pairs.most_common(1)[0][0] == ("orthanc", "dcm4chee")
    assert any(s.missing for s in studies)
    for s in studies:
        for source, sops in s.missing.items():
            held = {u for uids in s.instances[source].values() for u in uids}
            assert not held & set(sops)
            assert s.instance_counts[source] < max(s.instance_counts.values())
    name = [s for s in studies if "PatientName" in s.conflicts]
    desc = [s for s in studies if "StudyDescription" in s.conflicts]
    assert name and desc
    for s in name + desc:
        for values in s.conflicts.values():
            assert set(values) == set(s.sources) and len(set(values.values())) > 1


def test_conflicting_copies_share_uids_and_differ_in_the_field(plan: DemoPlan) -> None:
    study = next(s for s in plan.truth.studies if "StudyDescription" in s.conflicts)
    wanted = study.conflicts["StudyDescription"]
    for source, description in wanted.items():
        first = next(iter(study.instances[source].values()))[0]
        ds = next(_read(d) for d in plan.iter_files(source) if first.encode() in d)
        assert ds.StudyInstanceUID == study.study_uid
        assert ds.StudyDescription == description


def test_non_ascii_names_round_trip(plan: DemoPlan) -> None:
    truth = plan.truth
    names = {p.name for p in truth.patients}
    assert {"Müller^Jürgen", "Dupré^Élodie", "Łukasiewicz^Zoë"} <= names
    assert any(not n.isascii() and not n.replace("^", "").isascii() for n in names)
    seen: dict[tuple[str, str], tuple[str, str | None]] = {}
    for source in SOURCES:
        for data in plan.iter_files(source):
            ds = _read(data)
            seen[(source, ds.PatientID)] = (str(ds.PatientName), ds.get("SpecificCharacterSet"))
    for patient in truth.patients:
        for source, name in patient.names.items():
            got, charset = seen[(source, patient.patient_id)]
            assert got == name
            assert charset == (None if name.isascii() else "ISO_IR 192")
    assert any(
        p.names.get("legacy") == "Muller^Jurgen"
        for p in truth.patients
        if p.name == "Müller^Jürgen"
    )


def test_wildcard_prefix_names_exist_in_several_cases(plan: DemoPlan) -> None:
    martins = [p.name for p in plan.truth.patients if p.name.upper().startswith("MARTIN")]
    assert len(martins) >= 4
    assert any(n.startswith("MARTIN^") for n in martins)
    assert any(n.startswith("Martin^") for n in martins)


def test_misspell_always_changes_the_name() -> None:
    rng = random.Random(0)
    for name in ("Müller^Jürgen", "Иванова^Анна", "MARTIN^PAUL", "KIM^IDA", "Łukasiewicz^Zoë"):
        for _ in range(20):
            assert misspell(name, rng) != name


def test_truth_counts_match_files(plan: DemoPlan) -> None:
    truth = plan.truth
    for source in SOURCES:
        n = sum(1 for _ in plan.iter_files(source))
        assert n == plan.count(source) == truth.instance_counts[source]
        assert n == sum(s.instance_counts.get(source, 0) for s in truth.studies)
    for s in truth.studies:
        for source in s.sources:
            assert s.series_counts[source] == len(s.instances[source])
            assert s.instance_counts[source] == sum(len(u) for u in s.instances[source].values())


def test_truth_json_round_trip(plan: DemoPlan, tmp_path: Path) -> None:
    truth = plan.truth
    assert GroundTruth.from_json(truth.to_json()) == truth
    path = write_truth(truth, tmp_path / "out" / "truth.json")
    assert read_truth(path) == truth
    assert "Müller" in path.read_text(encoding="utf-8")


def test_sources_parameter() -> None:
    two = build_demo(seed=3, patients=10, sources=("a", "b"))
    assert two.sources == ("a", "b")
    assert {src for s in two.truth.studies for src in s.sources} == {"a", "b"}
    assert sum(1 for _ in two.iter_files("a")) == two.count("a")
    with pytest.raises(ValueError):
        build_demo(sources=("a", "a"))
    with pytest.raises(ValueError):
        build_demo(patients=0)
    with pytest.raises(KeyError):
        two.count("zzz")


def test_thousand_patients_generate_lazily() -> None:
    big = build_demo(patients=1000)
    assert len(big.truth.patients) == 1000
    for source in SOURCES:
        assert sum(1 for _ in big.iter_files(source)) == big.count(source)


def test_write_files(tmp_path: Path) -> None:
    small = build_demo(seed=5, patients=3)
    n = write_files(small, "orthanc", tmp_path)
    assert n == small.count("orthanc") == len(list(tmp_path.glob("*.dcm")))


class FakeSource:
    """In-memory archive: keeps the SOP Instance UIDs it was sent."""

    def __init__(self, refuse: bool = False) -> None:
        self.batches: list[int] = []
        self.held: set[str] = set()
        self.refuse = refuse

    async def store(self, files: Sequence[bytes]) -> StoreResult:
        await asyncio.sleep(0)
        uids = tuple(str(_read(f).SOPInstanceUID) for f in files)
        self.batches.append(len(files))
        if self.refuse:
            return StoreResult(stored=uids[1:], failed=uids[:1])
        self.held.update(uids)
        return StoreResult(stored=uids, bytes=sum(len(f) for f in files))


async def test_load_demo_stores_everything_in_batches() -> None:
    small = build_demo(seed=11, patients=6)
    fakes = {s: FakeSource() for s in SOURCES}
    calls: list[tuple[str, int, int]] = []
    counts = await load_demo(
        small,
        cast(dict[str, PacsSource], fakes),
        batch=7,
        progress=lambda s, d, t: calls.append((s, d, t)),
    )
    assert counts == {s: small.count(s) for s in SOURCES}
    for source, fake in fakes.items():
        assert max(fake.batches) <= 7
        assert fake.held == _held(small, source)
        last = [c for c in calls if c[0] == source][-1]
        assert last == (source, counts[source], counts[source])


async def test_load_demo_raises_on_refused_instances() -> None:
    small = build_demo(seed=11, patients=3)
    fakes = {"orthanc": FakeSource(refuse=True)}
    with pytest.raises(SeedLoadError) as info:
        await load_demo(small, cast(dict[str, PacsSource], fakes), batch=5)
    message = str(info.value)
    assert "orthanc" in message
    for patient in small.truth.patients:
        assert patient.patient_id not in message and patient.name not in message
    with pytest.raises(ValueError):
        await load_demo(small, cast(dict[str, PacsSource], {"nope": FakeSource()}))
