"""RT phantom of the demo data: analytic geometry, the RTSTRUCT file and its references."""

from __future__ import annotations

import io
import math

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from gateway.devstack.seed import DemoPlan, RtStructTruth, build_demo
from gateway.devstack.seed.rtstruct import (
    Box,
    Grid,
    Sphere,
    contour_volume_mm3,
    contours,
    phantom_shapes,
    polygon_area,
)

RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"


@pytest.fixture(scope="module")
def plan() -> DemoPlan:
    return build_demo(patients=3)


@pytest.fixture(scope="module")
def rt(plan: DemoPlan) -> RtStructTruth:
    assert len(plan.truth.rtstructs) == 1
    return plan.truth.rtstructs[0]


def _files(plan: DemoPlan, source: str, study_uid: str) -> list[Dataset]:
    out: list[Dataset] = []
    for data in plan.iter_files(source):
        ds = pydicom.dcmread(io.BytesIO(data))
        if ds.StudyInstanceUID == study_uid:
            out.append(ds)
    return out


def test_rt_study_is_complete_in_two_archives(plan: DemoPlan, rt: RtStructTruth) -> None:
    study = plan.truth.study(rt.study_uid)
    assert rt.sources == study.sources == ["orthanc", "dcm4chee"]
    assert not study.missing and not study.conflicts
    for source in rt.sources:
        assert study.instances[source][rt.ct_series_uid] == rt.ct_instance_uids
        assert study.instances[source][rt.rtstruct_series_uid] == [rt.rtstruct_instance_uid]
    assert study.modalities == ["CT", "RTSTRUCT"]


def test_rtstruct_references_the_ct(plan: DemoPlan, rt: RtStructTruth) -> None:
    files = _files(plan, "dcm4chee", rt.study_uid)
    ct = {ds.SOPInstanceUID: ds for ds in files if ds.Modality == "CT"}
    [rs] = [ds for ds in files if ds.Modality == "RTSTRUCT"]
    assert rs.SOPClassUID == RT_STRUCTURE_SET
    assert rs.SOPInstanceUID == rt.rtstruct_instance_uid
    assert set(ct) == set(rt.ct_instance_uids) and len(ct) == 40
    assert {ds.FrameOfReferenceUID for ds in ct.values()} == {rt.frame_of_reference_uid}
    [frame] = rs.ReferencedFrameOfReferenceSequence
    assert frame.FrameOfReferenceUID == rt.frame_of_reference_uid
    [study] = frame.RTReferencedStudySequence
    assert study.ReferencedSOPInstanceUID == rt.study_uid
    [series] = study.RTReferencedSeriesSequence
    assert series.SeriesInstanceUID == rt.ct_series_uid
    assert [i.ReferencedSOPInstanceUID for i in series.ContourImageSequence] == rt.ct_instance_uids
    rois = {r.ROINumber: r for r in rs.StructureSetROISequence}
    assert [rois[r.number].ROIName for r in rt.rois] == ["Sphere_r30", "Sphere_r15", "Box_40x30x30"]
    assert all(r.ReferencedFrameOfReferenceUID == rt.frame_of_reference_uid for r in rois.values())
    assert {o.ReferencedROINumber for o in rs.RTROIObservationsSequence} == set(rois)
    for roi in rs.ROIContourSequence:
        truth = rt.rois[roi.ReferencedROINumber - 1]
        assert len(roi.ContourSequence) == truth.contours
        for contour in roi.ContourSequence:
            assert contour.ContourGeometricType == "CLOSED_PLANAR"
            points = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
            assert len(points) == contour.NumberOfContourPoints
            [image] = contour.ContourImageSequence
            z = float(ct[image.ReferencedSOPInstanceUID].ImagePositionPatient[2])
            assert np.allclose(points[:, 2], z)


def test_sphere_contours_lie_on_the_sphere(plan: DemoPlan, rt: RtStructTruth) -> None:
    [rs] = [ds for ds in _files(plan, "orthanc", rt.study_uid) if ds.Modality == "RTSTRUCT"]
    for roi in rs.ROIContourSequence:
        truth = rt.rois[roi.ReferencedROINumber - 1]
        if truth.shape != "sphere":
            continue
        assert truth.radius_mm is not None
        cx, cy, cz = truth.center_mm
        for contour in roi.ContourSequence:
            p = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
            z = p[0, 2]
            r_slice = math.sqrt(truth.radius_mm**2 - (z - cz) ** 2)
            assert np.allclose(np.hypot(p[:, 0] - cx, p[:, 1] - cy), r_slice, atol=1e-3)
            distance = np.sqrt(((p - [cx, cy, cz]) ** 2).sum(axis=1))
            assert np.allclose(distance, truth.radius_mm, atol=1e-3)


def test_box_contours_are_its_rectangles(plan: DemoPlan, rt: RtStructTruth) -> None:
    box = next(r for r in rt.rois if r.shape == "box")
    assert box.size_mm == [40.0, 30.0, 30.0] and box.center_mm == [30.0, -35.0, -5.0]
    [rs] = [ds for ds in _files(plan, "orthanc", rt.study_uid) if ds.Modality == "RTSTRUCT"]
    roi = next(r for r in rs.ROIContourSequence if r.ReferencedROINumber == box.number)
    for contour in roi.ContourSequence:
        p = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
        assert sorted(set(p[:, 0])) == [10.0, 50.0] and sorted(set(p[:, 1])) == [-50.0, -20.0]
        assert -20.0 < p[0, 2] < 10.0


def test_analytic_measures_in_truth(rt: RtStructTruth) -> None:
    big, small, box = rt.rois
    assert big.radius_mm == 30.0 and small.radius_mm == 15.0
    assert big.volume_cm3 == pytest.approx(4 / 3 * math.pi * 27.0)
    assert big.surface_cm2 == pytest.approx(4 * math.pi * 9.0)
    assert small.volume_cm3 == pytest.approx(4 / 3 * math.pi * 1.5**3)
    assert box.volume_cm3 == pytest.approx(36.0) and box.surface_cm2 == pytest.approx(66.0)
    assert box.contour_volume_cm3 == pytest.approx(36.0)
    for roi in (big, small):
        assert roi.contour_volume_cm3 == pytest.approx(roi.volume_cm3, rel=0.03)
    assert rt.first_position_mm == [-78.75, -78.75, -48.75]
    assert rt.slice_z_mm[1] - rt.slice_z_mm[0] == rt.slice_thickness_mm == 2.5


def test_ct_pixels_show_the_shapes(plan: DemoPlan, rt: RtStructTruth) -> None:
    ct = sorted(
        (ds for ds in _files(plan, "orthanc", rt.study_uid) if ds.Modality == "CT"),
        key=lambda ds: float(ds.ImagePositionPatient[2]),
    )
    assert [ds.SOPInstanceUID for ds in ct] == rt.ct_instance_uids
    grid = Grid()
    for shape in phantom_shapes():
        cx, cy, cz = shape.center
        k = min(range(grid.slices), key=lambda i: abs(grid.z(i) - cz))
        col = round((cx - rt.first_position_mm[0]) / rt.pixel_spacing_mm)
        row = round((cy - rt.first_position_mm[1]) / rt.pixel_spacing_mm)
        ds = ct[k]
        hu = int(ds.pixel_array[row, col]) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert hu == shape.hu


def test_geometry_helpers() -> None:
    grid = Grid()
    sphere = Sphere("s", (0.0, 0.0, 0.0), 10.0, 0, (0, 0, 0))
    assert sphere.section_radius(10.0) is None and sphere.section_radius(6.0) == 8.0
    square = [(0.0, 0.0, 0.0), (2.0, 0.0, 0.0), (2.0, 3.0, 0.0), (0.0, 3.0, 0.0)]
    assert polygon_area(square) == 6.0
    box = Box("b", (0.0, 0.0, -5.0), (10.0, 10.0, 5.0), 0, (0, 0, 0))
    assert len(contours(box, grid)) == 4
    assert contour_volume_mm3(box, grid) == pytest.approx(1000.0)
    gx, gy = grid.pixel_centres()
    assert gx.shape == (grid.rows, grid.columns)
    assert sphere.mask(gx, gy, 0.0).sum() * grid.spacing**2 == pytest.approx(math.pi * 100, rel=0.1)
