"""The RT Structure Set instance of the phantom study (PS3.3 A.19, C.8.8.5-C.8.8.8).

Contours are the analytic ones of `gateway.devstack.seed.rtstruct`, one CLOSED_PLANAR
polygon per CT slice a shape crosses, each referencing that slice's instance.
"""

from __future__ import annotations

import io

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from gateway.devstack.seed.encode import IMPLEMENTATION_NAME, IMPLEMENTATION_UID, format_ds
from gateway.devstack.seed.images import charset_for, patient_study_values
from gateway.devstack.seed.model import CT_IMAGE, RT_STRUCTURE_SET, CopySpec, RtSpec, StudySpec
from gateway.devstack.seed.rtstruct import Shape, contours

# Study Component Management SOP Class, as RTReferencedStudySequence conventionally names it.
STUDY_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"


def _image_ref(sop_uid: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = CT_IMAGE
    ref.ReferencedSOPInstanceUID = sop_uid
    return ref


def _frame_of_reference(study: StudySpec, ct_uids: tuple[str, ...], rt: RtSpec) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = rt.ct_series_uid
    series.ContourImageSequence = [_image_ref(u) for u in ct_uids]
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = STUDY_REFERENCE_CLASS
    ref_study.ReferencedSOPInstanceUID = study.study_uid
    ref_study.RTReferencedSeriesSequence = [series]
    frame = Dataset()
    frame.FrameOfReferenceUID = study.frame_uid
    frame.RTReferencedStudySequence = [ref_study]
    return frame


def _roi_contour(number: int, shape: Shape, rt: RtSpec, ct_uids: tuple[str, ...]) -> Dataset:
    items = []
    for n, (k, points) in enumerate(contours(shape, rt.grid), start=1):
        item = Dataset()
        item.ContourImageSequence = [_image_ref(ct_uids[k])]
        item.ContourGeometricType = "CLOSED_PLANAR"
        item.NumberOfContourPoints = len(points)
        item.ContourNumber = n
        item.ContourData = [format_ds(v) for p in points for v in p]
        items.append(item)
    roi = Dataset()
    roi.ROIDisplayColor = list(shape.color)
    roi.ReferencedROINumber = number
    roi.ContourSequence = items
    return roi


def _structure_roi(number: int, shape: Shape, frame_uid: str) -> Dataset:
    roi = Dataset()
    roi.ROINumber = number
    roi.ReferencedFrameOfReferenceUID = frame_uid
    roi.ROIName = shape.name
    roi.ROIGenerationAlgorithm = "AUTOMATIC"
    return roi


def _observation(number: int, shape: Shape) -> Dataset:
    obs = Dataset()
    obs.ObservationNumber = number
    obs.ReferencedROINumber = number
    obs.ROIObservationLabel = shape.name
    obs.RTROIInterpretedType = shape.interpreted_type
    obs.ROIInterpreter = ""
    return obs


def rtstruct_dataset(study: StudySpec, copy: CopySpec) -> Dataset:
    """The structure set as a pydicom dataset (with file meta)."""
    rt = study.rt
    if rt is None:
        raise ValueError("study has no RT phantom")
    ct_uids = next(s.instance_uids for s in study.series if s.series_uid == rt.ct_series_uid)
    values = patient_study_values(study, copy)
    ds = Dataset()
    charset = charset_for(values)
    if charset:
        ds.SpecificCharacterSet = charset
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.SOPClassUID = RT_STRUCTURE_SET
    ds.SOPInstanceUID = rt.rtstruct_uid
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = rt.rtstruct_series_uid
    ds.SeriesNumber = 1000
    ds.SeriesDescription = "Structure Set"
    ds.OperatorsName = ""
    ds.InstanceNumber = 1
    ds.StructureSetLabel = rt.label
    ds.StructureSetName = "Analytic phantom"
    ds.StructureSetDate = study.date
    ds.StructureSetTime = study.time
    ds.ReferencedFrameOfReferenceSequence = [_frame_of_reference(study, ct_uids, rt)]
    numbered = list(enumerate(rt.shapes, start=1))
    ds.StructureSetROISequence = [_structure_roi(n, s, study.frame_uid) for n, s in numbered]
    ds.ROIContourSequence = [_roi_contour(n, s, rt, ct_uids) for n, s in numbered]
    ds.RTROIObservationsSequence = [_observation(n, s) for n, s in numbered]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(RT_STRUCTURE_SET)
    meta.MediaStorageSOPInstanceUID = UID(rt.rtstruct_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_NAME
    ds.file_meta = meta
    return ds


def rtstruct_bytes(study: StudySpec, copy: CopySpec) -> bytes:
    """The structure set as Part 10 bytes."""
    buf = io.BytesIO()
    dcmwrite(buf, rtstruct_dataset(study, copy), enforce_file_format=True)
    return buf.getvalue()
