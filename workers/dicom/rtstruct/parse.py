"""Reading an RT Structure Set: ROIs, contours and the image series they reference.

Implements the parts of PS3.3 A.19 (RT Structure Set IOD) the engine uses:
C.8.8.5 Structure Set Module (Referenced Frame of Reference Sequence ->
RT Referenced Study -> RT Referenced Series -> Contour Image Sequence, and the
Structure Set ROI Sequence), C.8.8.6 ROI Contour Module (Contour Sequence with
Contour Geometric Type and Contour Data) and C.8.8.8 RT ROI Observations Module.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from workers.dicom.rtstruct.model import Contour, RoiDef, RtStructError, StructureSet

RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
CONTOUR_DATA = 0x30060050


def _color(item: Dataset) -> tuple[int, int, int] | None:
    value = item.get("ROIDisplayColor")
    if value is None or len(value) != 3:
        return None
    return (int(value[0]), int(value[1]), int(value[2]))


def _points(contour: Dataset) -> NDArray[np.float64]:
    """Contour Data (DS, VM 3-3n) as floats; parsed from the raw bytes when not yet decoded."""
    if CONTOUR_DATA not in contour:
        return np.empty(0)
    elem = contour.get_item(CONTOUR_DATA)
    raw = getattr(elem, "value", None)
    try:
        if isinstance(raw, bytes):  # a RawDataElement: skip pydicom's per-value DS objects
            text = raw.decode("ascii").strip(" \x00")
            return np.array(text.split("\\"), dtype=np.float64) if text else np.empty(0)
        return np.asarray(contour.ContourData, dtype=np.float64).ravel()
    except (ValueError, UnicodeDecodeError) as exc:
        raise RtStructError("Contour Data holds a value that is not a number") from exc


def _contours(item: Dataset) -> tuple[Contour, ...]:
    out = []
    for c in item.get("ContourSequence", []):
        points = _points(c)
        if points.size % 3:
            raise RtStructError("Contour Data length is not a multiple of 3")
        images = tuple(
            str(i.ReferencedSOPInstanceUID)
            for i in c.get("ContourImageSequence", [])
            if "ReferencedSOPInstanceUID" in i
        )
        kind = str(c.get("ContourGeometricType", "CLOSED_PLANAR")).upper()
        out.append(Contour(kind, points.reshape(-1, 3), images))
    return tuple(out)


def _referenced(ds: Dataset) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Frame of reference UIDs, referenced series UIDs, referenced image UIDs (C.8.8.5)."""
    frames: list[str] = []
    series: list[str] = []
    images: list[str] = []
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        if "FrameOfReferenceUID" in frame:
            frames.append(str(frame.FrameOfReferenceUID))
        for study in frame.get("RTReferencedStudySequence", []):
            for s in study.get("RTReferencedSeriesSequence", []):
                if "SeriesInstanceUID" in s:
                    series.append(str(s.SeriesInstanceUID))
                images.extend(
                    str(i.ReferencedSOPInstanceUID)
                    for i in s.get("ContourImageSequence", [])
                    if "ReferencedSOPInstanceUID" in i
                )
    return _unique(frames), _unique(series), _unique(images)


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def parse_structure_set(ds: Dataset) -> StructureSet:
    """The structure set of an RTSTRUCT dataset; `RtStructError` when it is not one."""
    if ds.get("Modality") != "RTSTRUCT" and ds.get("SOPClassUID") != RT_STRUCTURE_SET:
        raise RtStructError("not an RT Structure Set instance")
    if "StructureSetROISequence" not in ds:
        raise RtStructError("RT Structure Set has no Structure Set ROI Sequence")
    observations = {
        int(o.ReferencedROINumber): o
        for o in ds.get("RTROIObservationsSequence", [])
        if "ReferencedROINumber" in o
    }
    contours = {
        int(c.ReferencedROINumber): c
        for c in ds.get("ROIContourSequence", [])
        if "ReferencedROINumber" in c
    }
    rois = []
    for item in ds.StructureSetROISequence:
        number = int(item.ROINumber)
        contour_item = contours.get(number)
        obs = observations.get(number)
        interpreted = obs.get("RTROIInterpretedType") if obs is not None else None
        rois.append(
            RoiDef(
                number=number,
                name=str(item.get("ROIName", "") or f"ROI {number}"),
                frame_uid=str(item.get("ReferencedFrameOfReferenceUID", "")) or None,
                contours=_contours(contour_item) if contour_item is not None else (),
                interpreted_type=str(interpreted) if interpreted else None,
                color=_color(contour_item) if contour_item is not None else None,
            )
        )
    frames, series, images = _referenced(ds)
    return StructureSet(
        study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        frame_uids=frames,
        referenced_series_uids=series,
        referenced_image_uids=images,
        rois=tuple(rois),
    )
