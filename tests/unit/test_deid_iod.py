"""IOD-aware actions (PS3.15 E.1.1): compound actions by attribute type, Type 1/2 kept.

The datasets are built here with pydicom: a CT image with every module its IOD
requires (PS3.3 A.3), and variants of it (an animal patient, RT, SR, PET, presentation
state, enhanced multi-frame). Where dicom3tools' dciodvfy is installed (`make setup`
installs it), the outputs are checked with it as the job checks them.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from workers.dicom.deid import DeidConfig, deidentify, deidentify_bytes, iod
from workers.dicom.deid.validate import InvalidOutput, dciodvfy_errors, process_instance

KEY = "unit-test-key-0123456789abcdef"
CT = "1.2.840.10008.5.1.4.1.1.2"
RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
SR_COMPREHENSIVE = "1.2.840.10008.5.1.4.1.1.88.33"
PET = "1.2.840.10008.5.1.4.1.1.128"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
DCIODVFY = shutil.which("dciodvfy")
needs_dciodvfy = pytest.mark.skipif(DCIODVFY is None, reason="dicom3tools not installed")


def reference(sop_class: str, sop_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_uid
    return item


def ct_image() -> Dataset:
    """A CT Image instance with the modules of its IOD (PS3.3 A.3) and identifying data."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = CT, "1.2.826.0.1.3680043.99.1.3"
    ds.InstanceCreationDate, ds.InstanceCreationTime = "20240102", "101010"
    # Patient (C.7.1.1)
    ds.PatientName, ds.PatientID = "Doe^Jane", "PID-4711"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
    # General Study (C.7.2.1)
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.99.1.1"
    ds.StudyDate, ds.StudyTime = "20240102", "100000"
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "Who^Doctor", "S1", "ACC1"
    ds.ReferencedStudySequence = Sequence(
        [reference("1.2.840.10008.3.1.2.3.1", "1.2.826.0.1.3680043.99.1.9")]
    )
    # General Series (C.7.3.1)
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "CT", "1.2.826.0.1.3680043.99.1.2", 1
    ds.SeriesDate, ds.SeriesTime, ds.ProtocolName = "20240102", "100500", "Chest Doe"
    ds.OperatorsName = "Tech^Tom"
    ds.PatientPosition, ds.Laterality = "HFS", ""
    # Frame of Reference (C.7.4.1), General Equipment (C.7.5.1)
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = "1.2.826.0.1.3680043.99.1.4", ""
    ds.Manufacturer, ds.InstitutionName, ds.StationName = "ACME", "St Elsewhere", "CT01"
    ds.DeviceSerialNumber = "SN-4711"
    # General Image (C.7.6.1), Image Plane (C.7.6.2), Image Pixel (C.7.6.3), CT Image (C.8.2.1)
    ds.InstanceNumber, ds.ContentDate, ds.ContentTime = 1, "20240102", "100600"
    ds.AcquisitionDate, ds.AcquisitionTime = "20240102", "100550"
    ds.ReferencedImageSequence = Sequence([reference(CT, "1.2.826.0.1.3680043.99.1.8")])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 1.0
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.KVP, ds.AcquisitionNumber = -1024, 1, 120, 1
    ds.PixelData = np.full((8, 8), 1000, np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def animal(ds: Dataset) -> Dataset:
    """`ds` for a dog: Patient Species present, so the 2C animal attributes apply."""
    out = copy.deepcopy(ds)
    out.PatientSpeciesDescription = "Canis lupus familiaris"
    out.PatientBreedDescription = "Beagle"
    out.PatientBreedCodeSequence = Sequence([])
    out.BreedRegistrationSequence = Sequence([])
    out.ResponsiblePerson, out.ResponsiblePersonRole = "Owner^Olga", "OWNER"
    out.ResponsibleOrganization = "Happy Paws Veterinary Clinic"
    out.PatientSexNeutered = "ALTERED"
    return out


def part10(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def run(ds: Dataset, *options: str) -> Dataset:
    out = deidentify(ds, DeidConfig(KEY, "proj", frozenset(options))).dataset
    assert out is not None
    return out


def new_errors(ds: Dataset) -> set[str]:
    """dciodvfy errors of the de-identified output that the original did not have."""
    out, _, _ = deidentify_bytes(part10(ds), DeidConfig(KEY, "proj"))
    assert out is not None
    before, after = dciodvfy_errors(part10(ds)), dciodvfy_errors(out)
    assert before is not None and after is not None
    return after - before


# -- the rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "kind", "expected"),
    [
        ("X/Z", "3", "X"),
        ("X/Z", "2", "Z"),
        ("X/D", "3", "X"),
        ("X/D", "1", "D"),
        ("X/D", "2", "D"),  # no Z in the combination: the dummy conforms
        ("X/Z/D", "3", "X"),
        ("X/Z/D", "2", "Z"),
        ("X/Z/D", "1", "D"),
        ("X/Z/U*", "3", "X"),
        ("X/Z/U*", "2", "Z"),
        ("X/Z/U*", "1", "U"),
        ("X", "3", "X"),
        ("X", "2", "Z"),  # a plain X on an attribute the IOD requires
        ("X", "1", "D"),
        ("Z", "3", "Z"),
        ("K", "3", "K"),
        # a type the table does not know: today's resolution
        ("X/Z", None, "Z"),
        ("X/Z/U*", None, "U"),
        ("X", None, "X"),
    ],
)
def test_decide(action: str, kind: str | None, expected: str) -> None:
    assert iod.decide(action, kind) == expected


def test_types_by_sop_class_and_condition() -> None:
    none: frozenset[str] = frozenset()
    assert iod.type_of(0x00081110, CT, none) == "3"  # Referenced Study Sequence
    assert iod.type_of(0x00081070, CT, none) == "3"  # Operators' Name, General Series
    assert iod.type_of(0x00081070, RT_STRUCT, none) == "2"  # RT Series
    assert iod.type_of(0x00080021, PET, none) == "1"  # Series Date, PET Series
    assert iod.type_of(0x00081111, SR_COMPREHENSIVE, none) == "2"  # SR Document Series
    assert iod.type_of(0x00102297, CT, none) == "3"  # Responsible Person: human
    assert iod.type_of(0x00102297, CT, frozenset({iod.ANIMAL})) == "2"
    assert iod.type_of(0x00181000, ENHANCED_CT, frozenset({iod.ENHANCED})) == "1"
    assert iod.type_of(0x00100010, CT, none) is None  # not in the table: not known


# -- the cases of the issue --------------------------------------------------------------


def test_type3_referenced_study_sequence_is_removed_not_emptied() -> None:
    """X/Z on a Type 3 (General Study): X. An empty sequence fails dciodvfy ("Bad Sequence
    number of Items 0 (1-n Required by Module definition)")."""
    out = run(ct_image())
    assert "ReferencedStudySequence" not in out
    for keyword in ("InstanceCreationDate", "InstanceCreationTime", "SeriesDate", "SeriesTime"):
        assert keyword not in out  # X/D, X/Z/D on Type 3 (SOP Common, General Series)
    for keyword in ("OperatorsName", "ProtocolName", "InstitutionName", "StationName"):
        assert keyword not in out
    for keyword in ("DeviceSerialNumber", "AcquisitionDate", "ReferencedImageSequence"):
        assert keyword not in out
    # Type 2 attributes of the IOD: present, zero-length
    for keyword in ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID"):
        assert keyword in out and not out[keyword].value
    assert out.ContentDate == "19000101"  # Z/D: not resolved by type, as before


@needs_dciodvfy
def test_job_check_passes_with_referenced_study_sequence() -> None:
    """What the job runs: `process_instance` (re-read + dciodvfy, no new error)."""
    out, report, _ = process_instance(part10(ct_image()), DeidConfig(KEY, "proj"))
    assert out is not None and report.sop_uid.startswith("2.25.")
    assert "ReferencedStudySequence" not in dcmread(BytesIO(out))


@needs_dciodvfy
def test_original_ct_is_valid() -> None:
    """The test dataset itself conforms, so every error after is one the engine made."""
    assert dciodvfy_errors(part10(ct_image())) == set()
    assert dciodvfy_errors(part10(animal(ct_image()))) == set()


def test_animal_patient_keeps_responsible_person_and_organization_empty() -> None:
    """Type 2C for a non-human patient (Patient module): zero-length, not removed; the
    role (1C: only with a Responsible Person value) goes with the value."""
    out = run(animal(ct_image()))
    assert "ResponsiblePerson" in out and not out.ResponsiblePerson
    assert "ResponsibleOrganization" in out and not out.ResponsibleOrganization
    assert "PatientSexNeutered" in out and not out.PatientSexNeutered  # X/Z, 2C animal
    assert "ResponsiblePersonRole" not in out
    assert out.PatientSpeciesDescription == "Canis lupus familiaris"
    human = copy.deepcopy(animal(ct_image()))
    del human.PatientSpeciesDescription
    plain = run(human)
    for keyword in ("ResponsiblePerson", "ResponsibleOrganization", "PatientSexNeutered"):
        assert keyword not in plain  # not required for a human patient: X
    assert "ResponsiblePersonRole" not in plain


def test_animal_by_species_code_sequence() -> None:
    ds = animal(ct_image())
    del ds.PatientSpeciesDescription
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "448771007", "SCT", "Dog"
    ds.PatientSpeciesCodeSequence = Sequence([code])
    out = run(ds)
    assert "ResponsiblePerson" in out and "ResponsibleOrganization" in out


@needs_dciodvfy
def test_animal_output_has_no_new_dciodvfy_error() -> None:
    assert new_errors(animal(ct_image())) == set()
    assert new_errors(ct_image()) == set()


def test_type2_and_type1_by_sop_class() -> None:
    """The same attribute differs by IOD: RT Series, SR Document Series, PET Series and
    Image, Presentation State Identification, Enhanced General Equipment."""
    rt = ct_image()
    rt.SOPClassUID, rt.Modality = RT_STRUCT, "RTSTRUCT"
    out = run(rt)
    assert "OperatorsName" in out and not out.OperatorsName  # X/Z/D, Type 2 in RT Series: Z
    sr = ct_image()
    sr.SOPClassUID, sr.Modality = SR_COMPREHENSIVE, "SR"
    sr.ReferencedPerformedProcedureStepSequence = Sequence(
        [reference("1.2.840.10008.3.1.2.3.3", "1.2.826.0.1.3680043.99.1.7")]
    )
    out = run(sr)
    assert len(out.ReferencedPerformedProcedureStepSequence) == 0  # X/Z/D, Type 2: Z
    pet = ct_image()
    pet.SOPClassUID, pet.Modality = PET, "PT"
    out = run(pet)
    assert out.SeriesDate == "19000101" and out.SeriesTime  # X/D, Type 1: D
    assert "AcquisitionDate" in out and not out.AcquisitionDate  # X/Z, Type 2: Z
    gsps = ct_image()
    gsps.SOPClassUID, gsps.Modality = GSPS, "PR"
    gsps.PresentationCreationDate, gsps.PresentationCreationTime = "20240103", "111111"
    out = run(gsps)
    assert out.PresentationCreationDate == "19000101"  # X on a Type 1: D
    assert out.PresentationCreationTime and out.PresentationCreationTime != "111111"
    assert "PresentationCreationDate" not in run(copy_with(gsps, SOPClassUID=CT))
    enhanced = ct_image()
    enhanced.SOPClassUID = ENHANCED_CT
    enhanced.SharedFunctionalGroupsSequence = Sequence([Dataset()])
    assert run(enhanced).DeviceSerialNumber == "ANONYMIZED"  # Enhanced General Equipment: 1


def test_source_image_sequence_of_a_derived_image() -> None:
    """Source Image Sequence is 1C in Enhanced US Volume and 2C in Ophthalmic Photography,
    "required if Image Type value 1 is DERIVED": U (references renewed), Z, else X."""
    ds = ct_image()
    ds.SourceImageSequence = Sequence([reference(CT, "1.2.826.0.1.3680043.99.1.6")])
    ds.ImageType = ["DERIVED", "PRIMARY"]
    del ds.PixelData  # no pixels: a photograph is not quarantined for burned-in text
    volume = run(copy_with(ds, SOPClassUID="1.2.840.10008.5.1.4.1.1.6.2"))
    [ref] = volume.SourceImageSequence
    assert ref.ReferencedSOPInstanceUID.startswith("2.25.")
    photo = copy_with(ds, SOPClassUID="1.2.840.10008.5.1.4.1.1.77.1.5.1")
    out = run(photo)
    assert "SourceImageSequence" in out and len(out.SourceImageSequence) == 0
    photo.ImageType = ["ORIGINAL", "PRIMARY"]
    assert "SourceImageSequence" not in run(photo)
    assert "SourceImageSequence" not in run(ds)  # CT: Type 3


def copy_with(ds: Dataset, **values: object) -> Dataset:
    out = copy.deepcopy(ds)
    for keyword, value in values.items():
        setattr(out, keyword, value)
    return out


def test_nested_items_keep_the_tables_resolution() -> None:
    """Types are those of the IOD's modules: inside a sequence item, X/Z/U* stays U."""
    ds = ct_image()
    item = Dataset()
    item.ReferencedImageSequence = Sequence([reference(CT, "1.2.826.0.1.3680043.99.1.8")])
    ds.ContentSequence = Sequence([item])  # D: kept as a dummy structure
    out = run(ds)
    [ref] = out.ContentSequence[0].ReferencedImageSequence
    assert ref.ReferencedSOPInstanceUID.startswith("2.25.")


def test_options_still_win() -> None:
    """An option column's K or C is not a combination: the type does not touch it."""
    ds = ct_image()
    kept = run(ds, "RetainDeviceIdentity", "RetainInstitutionIdentity")
    assert kept.DeviceSerialNumber == "SN-4711" and kept.StationName == "CT01"
    assert kept.InstitutionName == "St Elsewhere"
    dated = run(ds, "RetainLongitudinalTemporalInformationFullDates")
    assert dated.SeriesDate == "20240102" and dated.AcquisitionDate == "20240102"


# -- a failed instance is named ---------------------------------------------------------


@needs_dciodvfy
def test_invalid_output_names_instance_and_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its type (an attribute the table did not know), X/Z on Referenced Study
    Sequence empties it, dciodvfy refuses: the error names the new SOP Instance UID and
    the keyword, and quotes no value."""
    monkeypatch.delitem(iod.TYPES, 0x00081110)
    iod.actions_for.cache_clear()
    try:
        ds = ct_image()
        with pytest.raises(InvalidOutput) as caught:
            process_instance(part10(ds), DeidConfig(KEY, "proj"))
    finally:
        monkeypatch.undo()
        iod.actions_for.cache_clear()
    err = caught.value
    assert err.sop_uid.startswith("2.25.") and err.sop_uid != ds.SOPInstanceUID
    assert err.attributes == ("ReferencedStudySequence",)
    assert err.kind == "new dciodvfy error"
    text = f"{err} {err.attributes} {err.kind}"
    for value in ("Doe", "PID-4711", "St Elsewhere", "1.2.826.0.1.3680043.99"):
        assert value not in text
    assert isinstance(err, ValueError)
    import pickle

    again = pickle.loads(pickle.dumps(err))  # it crosses the process pool
    assert (again.sop_uid, again.attributes) == (err.sop_uid, err.attributes)


# -- the table against dciodvfy ----------------------------------------------------------

_MISSING = re.compile(r"Missing attribute Type (\w+) \w+ Element=<(\w+)>")
_SOP_CLASSES = {
    "CT": CT,
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "SC": "1.2.840.10008.5.1.4.1.1.7",
    "Enhanced CT": ENHANCED_CT,
    "Enhanced MR": "1.2.840.10008.5.1.4.1.1.4.1",
    "Enhanced XA": "1.2.840.10008.5.1.4.1.1.12.1.1",
    "Enhanced US Volume": "1.2.840.10008.5.1.4.1.1.6.2",
    "Segmentation": "1.2.840.10008.5.1.4.1.1.66.4",
    "PET": PET,
    "Ophthalmic Photography 8 Bit": "1.2.840.10008.5.1.4.1.1.77.1.5.1",
    "RT Image": "1.2.840.10008.5.1.4.1.1.481.1",
    "RT Dose": "1.2.840.10008.5.1.4.1.1.481.2",
    "RT Structure Set": RT_STRUCT,
    "RT Plan": "1.2.840.10008.5.1.4.1.1.481.5",
    "Comprehensive SR": SR_COMPREHENSIVE,
    "Key Object Selection": "1.2.840.10008.5.1.4.1.1.88.59",
    "GSPS": GSPS,
    "Encapsulated PDF": "1.2.840.10008.5.1.4.1.1.104.1",
    "12-lead ECG": "1.2.840.10008.5.1.4.1.1.9.1.1",
}


def _required_by_dciodvfy(sop_class: str) -> dict[str, str]:
    """keyword -> type of what dciodvfy misses in an otherwise empty instance of the class,
    with every condition of `iod` holding (an animal, derived, approved)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, "1.2.3.4"
    ds.PatientSpeciesDescription, ds.ImageType = "dog", ["DERIVED", "PRIMARY"]
    ds.ApprovalStatus = "APPROVED"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "i.dcm"
        ds.save_as(path, enforce_file_format=True)
        proc = subprocess.run([str(DCIODVFY), str(path)], capture_output=True, text=True)
    return {m.group(2): m.group(1) for m in _MISSING.finditer(proc.stdout + proc.stderr)}


@needs_dciodvfy
@pytest.mark.parametrize("name", sorted(_SOP_CLASSES))
def test_types_agree_with_dciodvfy(name: str) -> None:
    """Every attribute of `iod.TYPES` dciodvfy requires (Type 1 or 2) in the IOD is Type 1
    or 2 in the table too, and every Type 1 or 2 of the table is one dciodvfy requires
    (the enhanced multi-frame flag aside: its IODs are named by their SOP Class here)."""
    from pydicom.datadict import keyword_for_tag

    sop_class = _SOP_CLASSES[name]
    required = _required_by_dciodvfy(sop_class)
    flags = frozenset({iod.ANIMAL, iod.DERIVED, iod.APPROVED})
    enhanced = name.startswith("Enhanced") or name == "Segmentation"
    if enhanced:
        flags |= {iod.ENHANCED}
    for tag in iod.TYPES:
        keyword = keyword_for_tag(tag)
        ours = iod.type_of(tag, sop_class, flags)
        theirs = required.get(keyword)
        if theirs is not None:
            assert ours in ("1", "2"), (keyword, theirs, ours)
            assert ours == theirs[0] or (ours == "1" and theirs[0] == "2"), (keyword, theirs)
        elif ours in ("1", "2") and not (tag == 0x0008002A and enhanced):
            # Acquisition DateTime is 1C in Enhanced CT/MR (Image Type ORIGINAL or MIXED)
            pytest.fail(f"{keyword}: Type {ours} here, not required by dciodvfy in {name}")


class _Destination:
    """A destination that keeps what it is given (the job's `store` call)."""

    id = "research"

    def __init__(self) -> None:
        self.stored: list[bytes] = []

    async def store(self, files: list[bytes]) -> object:
        from gateway.sources.base import StoreResult

        self.stored += files
        return StoreResult(stored=tuple(str(n) for n in range(len(files))))


class _Runtime:
    def __init__(self, pool: object) -> None:
        self.pool = pool

    def cpu_pool(self) -> object:
        return self.pool


@needs_dciodvfy
async def test_job_reports_the_failed_instance_and_exports_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One instance of three fails dciodvfy (its Referenced Study Sequence emptied, the
    type rule taken away): the job stores the other two and names the failed one by its
    new SOP Instance UID and the attribute keyword (before: the whole study failed)."""
    from concurrent.futures import ThreadPoolExecutor

    from workers.jobs import anonymize
    from workers.jobs.base import RecordingHandle

    files, bad_uid = [], ""
    for n in range(3):
        ds = ct_image()
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.99.1.3{n}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if n != 1:
            del ds.ReferencedStudySequence
        else:
            bad_uid = ds.SOPInstanceUID
        files.append(part10(ds))

    async def retrieve() -> object:
        for data in files:
            yield data

    monkeypatch.delitem(iod.TYPES, 0x00081110)
    iod.actions_for.cache_clear()
    dest = _Destination()
    config = DeidConfig(KEY, "proj")
    try:
        with ThreadPoolExecutor(2) as pool:
            run_ = anonymize._Run(
                RecordingHandle("t"),
                _Runtime(pool),
                config,
                dest,
                3,
            )
            await run_.consume(retrieve())
            await run_.flush()
    finally:
        monkeypatch.undo()
        iod.actions_for.cache_clear()
    from workers.dicom.deid import new_uid

    assert run_.instances == 2 and len(dest.stored) == 2
    assert run_.failed == [
        {
            "anonymizedSopInstanceUid": new_uid(KEY, "proj", bad_uid),
            "attributes": ["ReferencedStudySequence"],
            "reason": "new dciodvfy error",
        }
    ]
    assert run_.quarantined == []


# -- found by the real-world corpus (tests/unit/test_deid_corpus.py, issue 16 §1) ----------


def _content_tree(ds: Dataset) -> list[tuple[str, object]]:
    """(keyword, value) of the structural values of every content item, in order."""
    out: list[tuple[str, object]] = []
    for item in ds.get("ContentSequence", []):
        for keyword in (
            "RelationshipType",
            "ValueType",
            "ContinuityOfContent",
            "GraphicType",
            "ReferencedContentItemIdentifier",
            "ReferencedFrameNumber",
        ):
            if keyword in item:
                out.append((keyword, item[keyword].value))
        out += _content_tree(item)
    return out


def sr_document() -> Dataset:
    """pydicom's test SR (a Comprehensive SR shipped in its wheel): text, names, dates,
    codes, image references with frame numbers, a by-reference content item."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("test-SR.dcm")
    assert path is not None
    return dcmread(path)


def test_dummy_content_sequence_keeps_its_structure() -> None:
    """Content Sequence is D: its text becomes dummies, but the code strings and numbers
    that make the content tree (Value Type, Relationship Type, Referenced Content Item
    Identifier, Referenced Frame Number) stay. Before, they became "ANONYMIZED" and 0,
    and dciodvfy refused the output (unknown Value Type, text present for no type)."""
    source = sr_document()
    out = run(source)
    tree = _content_tree(out)
    assert tree and tree == _content_tree(source)
    texts = [
        e.value
        for item in out.ContentSequence
        for e in item
        if e.keyword in ("TextValue", "PersonName", "Date", "DateTime")
    ]
    assert texts and set(map(str, texts)) <= {"ANONYMIZED", "19000101", "19000101000000"}


@needs_dciodvfy
def test_structured_report_passes_the_job_check() -> None:
    out, _, _ = process_instance(part10(sr_document()), DeidConfig(KEY, "proj"))
    assert out is not None


@needs_dciodvfy
def test_dciodvfy_comparison_ignores_uid_values() -> None:
    """dciodvfy quotes UIDs in some errors ("StudyInstanceUID has same value as
    FrameOfReferenceUID <uid>", "... ReferencedSOPInstanceUID <uid>"); the new UID must not
    make the same error of the original look new."""
    ds = ct_image()
    ds.FrameOfReferenceUID = ds.StudyInstanceUID  # as in pydicom's DICOMDIR test MR series
    before = dciodvfy_errors(part10(ds))
    assert before and any("same value as" in line for line in before)
    out, _, _ = process_instance(part10(ds), DeidConfig(KEY, "proj"))
    assert out is not None


def test_an_attribute_the_original_lacked_is_not_refused() -> None:
    """The output check wants Modality and the study and series UIDs; an original without
    them (secondary captures and photographs in the wild) is not the engine's fault: the
    instance is exported. One the engine took away is still refused."""
    ds = ct_image()
    del ds.Modality
    out, _, _ = process_instance(part10(ds), DeidConfig(KEY, "proj"))
    assert out is not None and "Modality" not in dcmread(BytesIO(out))
    from workers.dicom.deid import validate

    data = part10(ct_image())
    no_modality = dcmread(BytesIO(data))
    del no_modality.Modality
    with pytest.raises(ValueError, match="lacks Modality"):
        validate.check_output(part10(no_modality), validate._present(data))
