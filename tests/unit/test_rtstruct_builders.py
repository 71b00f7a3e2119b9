"""Synthetic CT series and RT Structure Sets for the RT-STRUCT tests and benchmark.

Any orientation, pixel spacing and (non-uniform) slice positions; shapes are
spheres, boxes and shells whose contours are cut exactly on the slice planes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
FFS = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # feet first supine: patient left is image right
Hu = Callable[[NDArray[np.float64]], NDArray[np.float64]]
ContourSpec = tuple[str, NDArray[np.float64]]  # (geometric type, points (n, 3))


def _meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def ct_series(
    rows: int = 64,
    columns: int = 64,
    spacing: tuple[float, float] = (2.5, 2.5),
    offsets: Sequence[float] | None = None,
    orientation: Sequence[float] = AXIAL,
    hu: Hu | None = None,
    position: str = "HFS",
    study_uid: str | None = None,
) -> list[Dataset]:
    """A CT series centred on the origin; `offsets` are slice positions along the normal."""
    r, c = np.array(orientation[:3], float), np.array(orientation[3:], float)
    n = np.cross(r, c)
    offs = list(offsets) if offsets is not None else [(k - 19.5) * 2.5 for k in range(40)]
    base = -(columns - 1) / 2 * spacing[1] * r - (rows - 1) / 2 * spacing[0] * c
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    jj, ii = np.mgrid[0:rows, 0:columns].astype(float)
    out = []
    for k, s in enumerate(offs):
        ipp = base + s * n
        ds = Dataset()
        ds.file_meta = _meta(CT_IMAGE, generate_uid())
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE, ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "SYNTH", "Synthetic^Phantom"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID, ds.PatientPosition = frame_uid, position
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [round(float(v), 6) for v in ipp]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = abs(offs[1] - offs[0]) if len(offs) > 1 else 2.5
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        world = ipp + np.multiply.outer(ii * spacing[1], r) + np.multiply.outer(jj * spacing[0], c)
        values = hu(world) if hu is not None else np.zeros((rows, columns))
        ds.PixelData = np.clip(values + 1024, 0, 65535).astype("<u2").tobytes()
        out.append(ds)
    return out


def frame(
    ct: Sequence[Dataset],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(row direction, column direction, normal) of the series."""
    iop = np.array(ct[0].ImageOrientationPatient, float)
    return iop[:3], iop[3:], np.cross(iop[:3], iop[3:])


def plane_offsets(ct: Sequence[Dataset]) -> list[tuple[float, Dataset]]:
    """(position along the normal, dataset) of each slice."""
    _, _, n = frame(ct)
    return [(float(np.dot(np.array(ds.ImagePositionPatient, float), n)), ds) for ds in ct]


def circle(
    center: NDArray[np.float64],
    radius: float,
    r: NDArray[np.float64],
    c: NDArray[np.float64],
    step: float = 1.0,
) -> NDArray[np.float64]:
    """Points on a circle in the plane spanned by r, c (about one per `step` mm)."""
    m = max(12, math.ceil(2 * math.pi * radius / step))
    t = 2 * math.pi * np.arange(m) / m
    return np.asarray(
        center + radius * (np.multiply.outer(np.cos(t), r) + np.multiply.outer(np.sin(t), c))
    )


def sphere(
    ct: Sequence[Dataset], center: Sequence[float], radius: float, step: float = 1.0
) -> list[ContourSpec]:
    """CLOSED_PLANAR sections of a sphere on every slice plane it crosses."""
    r, c, n = frame(ct)
    ctr = np.array(center, float)
    out = []
    for s, _ in plane_offsets(ct):
        dz = s - float(ctr @ n)
        if abs(dz) < radius:
            out.append(
                ("CLOSED_PLANAR", circle(ctr + dz * n, math.sqrt(radius**2 - dz**2), r, c, step))
            )
    return out


def box(ct: Sequence[Dataset], center: Sequence[float], size: Sequence[float]) -> list[ContourSpec]:
    """Rectangles of a box aligned with the grid axes (size along row dir, column dir, normal)."""
    r, c, n = frame(ct)
    ctr = np.array(center, float)
    out = []
    for s, _ in plane_offsets(ct):
        dz = s - float(ctr @ n)
        if abs(dz) < size[2] / 2:
            p = ctr + dz * n
            hx, hy = size[0] / 2 * r, size[1] / 2 * c
            out.append(
                ("CLOSED_PLANAR", np.array([p - hx - hy, p + hx - hy, p + hx + hy, p - hx + hy]))
            )
    return out


def rtstruct(ct: Sequence[Dataset], rois: Sequence[tuple[str, Sequence[ContourSpec]]]) -> Dataset:
    """An RT Structure Set over `ct`; each contour references the slice whose plane it lies on."""
    planes = plane_offsets(ct)
    _, _, n = frame(ct)
    first = ct[0]
    ds = Dataset()
    ds.file_meta = _meta(RT_STRUCTURE_SET, generate_uid())
    ds.SOPClassUID, ds.SOPInstanceUID = RT_STRUCTURE_SET, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientName = "RTSTRUCT", first.PatientID, first.PatientName
    ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, generate_uid()
    ds.StructureSetLabel = "SYNTH"

    def image_ref(sop: str) -> Dataset:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = CT_IMAGE, sop
        return item

    series = Dataset()
    series.SeriesInstanceUID = first.SeriesInstanceUID
    series.ContourImageSequence = [image_ref(d.SOPInstanceUID) for d in ct]
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study.RTReferencedSeriesSequence = [series]
    ref = Dataset()
    ref.FrameOfReferenceUID = first.FrameOfReferenceUID
    ref.RTReferencedStudySequence = [study]
    ds.ReferencedFrameOfReferenceSequence = [ref]
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, (name, contours) in enumerate(rois, start=1):
        item = Dataset()
        item.ROINumber, item.ROIName = number, name
        item.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
        item.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(item)
        roi = Dataset()
        roi.ReferencedROINumber, roi.ROIDisplayColor = number, [255, 0, 0]
        roi.ContourSequence = []
        for kind, points in contours:
            contour = Dataset()
            s = float(points[0] @ n)
            _, near = min(planes, key=lambda t: abs(t[0] - s))
            contour.ContourImageSequence = [image_ref(near.SOPInstanceUID)]
            contour.ContourGeometricType = kind
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [round(float(v), 4) for v in np.asarray(points).ravel()]
            roi.ContourSequence.append(contour)
        ds.ROIContourSequence.append(roi)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType = "ORGAN"
        ds.RTROIObservationsSequence.append(obs)
    return ds


def test_ct_series_geometry() -> None:
    ct = ct_series(rows=4, columns=6, spacing=(1.0, 2.0), offsets=[0.0, 1.0, 3.0], orientation=FFS)
    assert len(ct) == 3 and ct[0].Rows == 4 and ct[0].Columns == 6
    assert np.allclose(ct[2].ImagePositionPatient, [5.0, -1.5, -3.0])


def test_rtstruct_references_slices() -> None:
    ct = ct_series(rows=16, columns=16, offsets=[-5.0, 0.0, 5.0])
    ds = rtstruct(ct, [("s", sphere(ct, (0.0, 0.0, 0.0), 6.0))])
    contours = ds.ROIContourSequence[0].ContourSequence
    assert len(contours) == 3
    assert contours[1].ContourImageSequence[0].ReferencedSOPInstanceUID == ct[1].SOPInstanceUID
