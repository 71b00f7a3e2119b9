"""The de-identification engine on the seeded demo instances: options, UIDs, dates, quarantine."""

from __future__ import annotations

import copy
from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from gateway.devstack.seed import build_demo
from workers.dicom.deid import DeidConfig, OptionError, deidentify, deidentify_bytes, pseudonym
from workers.dicom.deid.validate import check_output

KEY = "unit-test-key-0123456789abcdef"
MODIFIED = "RetainLongitudinalTemporalInformationModifiedDates"


@pytest.fixture(scope="module")
def seeded() -> list[Dataset]:
    plan = build_demo(seed=42, patients=20)
    return [dcmread(BytesIO(b)) for b in plan.iter_files("orthanc")]


def run(ds: Dataset, *options: str, project: str = "proj") -> Dataset:
    out = deidentify(ds, DeidConfig(KEY, project, frozenset(options))).dataset
    assert out is not None
    return out


def test_unknown_option_refused() -> None:
    with pytest.raises(OptionError, match="NoSuchOption"):
        DeidConfig(KEY, "proj", frozenset({"NoSuchOption"}))


def test_uids_consistent_per_project_and_key(seeded: list[Dataset]) -> None:
    ds = seeded[0]
    a, b = run(ds), run(ds)
    assert a.StudyInstanceUID == b.StudyInstanceUID != ds.StudyInstanceUID
    assert a.SOPInstanceUID == a.file_meta.MediaStorageSOPInstanceUID
    assert run(ds, project="other").StudyInstanceUID != a.StudyInstanceUID
    other_key = deidentify(ds, DeidConfig(KEY + "x", "proj")).dataset
    assert other_key is not None and other_key.StudyInstanceUID != a.StudyInstanceUID
    assert a.PatientID == str(a.PatientName) == pseudonym(KEY, "proj", ds.PatientID, "DEMO")


def test_study_uids_and_references_resolve(seeded: list[Dataset]) -> None:
    rt = next(d for d in seeded if d.Modality == "RTSTRUCT")
    study = [d for d in seeded if d.StudyInstanceUID == rt.StudyInstanceUID]
    out = [run(d) for d in study]
    assert len({d.StudyInstanceUID for d in out}) == 1
    new_rt = next(d for d in out if d.Modality == "RTSTRUCT")
    cts = [d for d in out if d.Modality == "CT"]
    sops = {d.SOPInstanceUID for d in cts}
    frames = {d.FrameOfReferenceUID for d in cts}
    ref = new_rt.ReferencedFrameOfReferenceSequence[0]
    assert ref.FrameOfReferenceUID in frames
    contour_refs = {
        img.ReferencedSOPInstanceUID
        for roi in new_rt.ROIContourSequence
        for c in roi.ContourSequence
        for img in c.get("ContourImageSequence", [])
    }
    assert contour_refs and contour_refs <= sops
    for roi in new_rt.StructureSetROISequence:
        assert roi.ReferencedFrameOfReferenceUID in frames


def test_modified_dates_shift_consistently_per_patient(seeded: list[Dataset]) -> None:
    by_patient: dict[str, list[Dataset]] = {}
    for d in seeded:
        by_patient.setdefault(d.PatientID, []).append(d)
    shifts = {}
    for pid, items in list(by_patient.items())[:4]:
        deltas = set()
        for d in items[:3]:
            out = run(d, MODIFIED)
            assert out.LongitudinalTemporalInformationModified == "MODIFIED"
            assert out.StudyTime == d.StudyTime
            before = np.datetime64(f"{d.StudyDate[:4]}-{d.StudyDate[4:6]}-{d.StudyDate[6:]}")
            after = np.datetime64(f"{out.StudyDate[:4]}-{out.StudyDate[4:6]}-{out.StudyDate[6:]}")
            deltas.add(int((after - before).astype(int)))
        assert len(deltas) == 1 and next(iter(deltas)) <= -365
        shifts[pid] = deltas.pop()
    assert len(set(shifts.values())) > 1


def test_date_options(seeded: list[Dataset]) -> None:
    ds = seeded[0]
    full = run(ds, "RetainLongitudinalTemporalInformationFullDates")
    assert full.StudyDate == ds.StudyDate and full.SeriesDate == ds.SeriesDate
    assert full.LongitudinalTemporalInformationModified == "UNMODIFIED"
    basic = run(ds)
    assert not basic.StudyDate and "SeriesDate" not in basic  # Z; X/D on a Type 3: X
    assert basic.LongitudinalTemporalInformationModified == "REMOVED"


def test_each_option_toggles_its_rows(seeded: list[Dataset]) -> None:
    ds = copy.deepcopy(seeded[0])
    ds.DeviceSerialNumber, ds.StationName = "SN-4711", "CT-ROOM-7"
    ds.AcquisitionContextSequence = Sequence([Dataset()])
    ds.AcquisitionContextSequence[0].CodeValue = "X1"
    basic = run(ds)
    assert not basic.PatientSex and "PatientAge" not in basic
    for keyword in ("DeviceSerialNumber", "StationName", "InstitutionName"):
        assert keyword not in basic  # X/Z/D on a Type 3 of General Equipment: X
    assert "StudyDescription" not in basic and len(basic.AcquisitionContextSequence) == 0
    assert run(ds, "RetainPatientCharacteristics").PatientAge == ds.PatientAge
    device = run(ds, "RetainDeviceIdentity")
    assert device.DeviceSerialNumber == "SN-4711" and device.StationName == "CT-ROOM-7"
    assert run(ds, "RetainInstitutionIdentity").InstitutionName == ds.InstitutionName
    assert run(ds, "RetainUIDs").StudyInstanceUID == ds.StudyInstanceUID
    assert run(ds, "CleanDescriptors").StudyDescription == ds.StudyDescription
    assert run(ds, "CleanStructuredContent").AcquisitionContextSequence[0].CodeValue == "X1"
    codes = [
        i.CodeValue
        for i in run(ds, "CleanDescriptors", MODIFIED).DeidentificationMethodCodeSequence
    ]
    assert codes == ["113100", "113105", "113107"]


def test_clean_descriptors_scrubs_identifiers(seeded: list[Dataset]) -> None:
    ds = copy.deepcopy(seeded[0])
    family = str(ds.PatientName).split("^")[0]
    ds.StudyDescription = f"CT for {family.title()} id {ds.PatientID} born 1990-01-02"
    ds.ImageComments = f"seen at {ds.InstitutionName}"
    out = run(ds, "CleanDescriptors")
    assert family.lower() not in out.StudyDescription.lower()
    assert ds.PatientID not in out.StudyDescription and "1990" not in out.StudyDescription
    assert out.StudyDescription.startswith("CT for")
    assert "General Hospital" not in out.ImageComments


def test_quarantine_and_clean_pixel_data(seeded: list[Dataset]) -> None:
    ds = copy.deepcopy(next(d for d in seeded if d.Modality == "CT"))
    burned = copy.deepcopy(ds)
    burned.BurnedInAnnotation = "YES"
    outcome = deidentify(burned, DeidConfig(KEY, "proj"))
    assert outcome.dataset is None and outcome.report.quarantined == "BurnedInAnnotation=YES"
    assert outcome.report.sop_uid.startswith("2.25.")
    us = copy.deepcopy(ds)
    us.Modality = "US"
    assert deidentify(us, DeidConfig(KEY, "proj")).report.quarantined == "modality US"
    sc = copy.deepcopy(ds)
    sc.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    assert deidentify(sc, DeidConfig(KEY, "proj")).report.quarantined == "secondary capture"
    ds.PixelData = np.full((64, 64), 500, np.uint16).tobytes()
    cleaned = run(us_with(ds), "CleanPixelData")
    pixels = cleaned.pixel_array
    assert (pixels[:6] == 0).all() and (pixels[-6:] == 0).all() and (pixels[32] == 500).all()
    assert cleaned.BurnedInAnnotation == "NO"


def test_no_pixel_data_nothing_burned_in(seeded: list[Dataset]) -> None:
    """A Secondary Capture (or US) instance without pixel data has nothing to burn text
    into: exported, not quarantined; with pixel data it still is."""
    ds = copy.deepcopy(next(d for d in seeded if d.Modality == "CT"))
    sc = copy.deepcopy(ds)
    sc.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    del sc.PixelData
    outcome = deidentify(sc, DeidConfig(KEY, "proj"))
    assert outcome.report.quarantined is None and outcome.dataset is not None
    us = us_with(sc)
    assert deidentify(us, DeidConfig(KEY, "proj")).report.quarantined is None
    sc.PixelData = ds.PixelData
    assert deidentify(sc, DeidConfig(KEY, "proj")).report.quarantined == "secondary capture"
    sc.BurnedInAnnotation = "YES"  # said so explicitly: quarantined, pixels or not
    del sc.PixelData
    assert deidentify(sc, DeidConfig(KEY, "proj")).report.quarantined == "BurnedInAnnotation=YES"


def test_visible_light_images_are_named_as_such(seeded: list[Dataset]) -> None:
    """The Secondary Capture prefix (…1.1.7) also matched every VL class (…1.1.77.*): a VL
    photograph is still quarantined, under its own name; SC multi-frame stays SC."""
    ds = copy.deepcopy(next(d for d in seeded if d.Modality == "CT"))
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"  # VL Photographic Image
    assert deidentify(ds, DeidConfig(KEY, "proj")).report.quarantined == "visible light image"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.4"  # Multi-frame True Color SC
    assert deidentify(ds, DeidConfig(KEY, "proj")).report.quarantined == "secondary capture"


def us_with(ds: Dataset) -> Dataset:
    out = copy.deepcopy(ds)
    out.Modality = "US"
    return out


def test_bytes_round_trip_validates(seeded: list[Dataset]) -> None:
    raw = BytesIO()
    seeded[0].save_as(raw, enforce_file_format=True)
    out, report, identity = deidentify_bytes(raw.getvalue(), DeidConfig(KEY, "proj"))
    assert out is not None
    check_output(out)
    assert report.study_uid.startswith("2.25.") and report.actions["U"] >= 3
    assert identity["PatientID"] == seeded[0].PatientID
    assert seeded[0].PatientID.encode() not in out
    assert str(seeded[0].PatientName).split("^")[0].encode() not in out


def test_identity_in_the_preamble_is_wiped(seeded: list[Dataset]) -> None:
    raw = BytesIO()
    seeded[0].save_as(raw, enforce_file_format=True)
    marked = b"PHI-PREAMBLE-" + seeded[0].PatientID.encode()
    data = marked.ljust(128, b"\x01") + raw.getvalue()[128:]
    assert dcmread(BytesIO(data)).PatientID == seeded[0].PatientID, "still a valid file"
    out, _, _ = deidentify_bytes(data, DeidConfig(KEY, "proj"))
    assert out is not None
    assert out[:128] == b"\x00" * 128
    assert b"PHI-PREAMBLE" not in out


def _implicit(ds: Dataset) -> bytes:
    """A dataset's elements in Implicit VR Little Endian, as an archive would keep an unknown."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    return buf.getvalue()


def test_un_encoded_elements_are_deidentified_too(seeded: list[Dataset]) -> None:
    """Elements an archive stored with VR UN (sequences, UIDs) are decoded and processed."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    def raw_un(tag: int, value: bytes) -> RawDataElement:
        return RawDataElement(Tag(tag), "UN", len(value), value, 0, False, True)

    ds = copy.deepcopy(seeded[0])
    inner = Dataset()
    inner.SeriesInstanceUID = "1.2.3.4.999"
    inner.PatientName = "UNSEQ^MARKER"
    item = _implicit(inner)
    # one item of undefined length, then the sequence delimiter
    seq = (
        b"\xfe\xff\x00\xe0"
        + len(item).to_bytes(4, "little")
        + item
        + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    ds[0x00081115] = raw_un(0x00081115, seq)  # type: ignore[assignment]  # Referenced Series Seq
    ds[0x00081155] = raw_un(0x00081155, b"1.2.3.4.998\x00")  # type: ignore[assignment]
    raw = BytesIO()
    ds.save_as(raw, enforce_file_format=True)
    assert b"UNSEQ^MARKER" in raw.getvalue()
    out, _, _ = deidentify_bytes(raw.getvalue(), DeidConfig(KEY, "proj"))
    assert out is not None
    assert b"UNSEQ" not in out and b"MARKER" not in out
    assert b"1.2.3.4.999" not in out and b"1.2.3.4.998" not in out


def test_dciodvfy_sees_a_new_missing_attribute(seeded: list[Dataset]) -> None:
    """The before/after comparison names the attribute, and quotes no value."""
    from workers.dicom.deid.validate import dciodvfy_errors

    ct = next(ds for ds in seeded if ds.Modality == "CT")

    def errors(ds: Dataset) -> set[str]:
        raw = BytesIO()
        ds.save_as(raw, enforce_file_format=True)
        found = dciodvfy_errors(raw.getvalue())
        assert found is not None, "dicom3tools is installed by make setup"
        return found

    before = errors(ct)
    broken = copy.deepcopy(ct)
    del broken.FrameOfReferenceUID
    del broken.ImagePositionPatient
    new = errors(broken) - before
    assert any("FrameOfReferenceUID" in line for line in new)
    assert any("ImagePositionPatient" in line for line in new)
    assert not any(str(ct.PatientName) in line for line in errors(broken))
