"""Structure sets as real ones come: holes, several contours per slice, odd contour types,
non-uniform and non-HFS grids, ROIs at the image edge, missing image series."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom import dcmwrite
from pydicom.dataset import Dataset

from gateway.core.errors import InvalidInput, JobError
from gateway.core.settings import parse_settings
from gateway.jobs.specs import RtStructSpec
from gateway.sources.base import InstanceRecord, SeriesRecord
from tests.unit.test_rtstruct_builders import (
    FFS,
    box,
    circle,
    ct_series,
    frame,
    plane_offsets,
    rtstruct,
    sphere,
)
from workers.dicom.rtstruct import RtStructError, process
from workers.dicom.rtstruct.export import mask_image
from workers.dicom.rtstruct.grid import build_stack
from workers.dicom.rtstruct.parse import parse_structure_set
from workers.dicom.rtstruct.raster import rasterize
from workers.jobs import base as job_base
from workers.jobs import rtstruct as job


def _rect(ct: Sequence[Dataset], k: int, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    z = float(ct[k].ImagePositionPatient[2])
    return np.array([(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)])


def test_inner_contour_is_a_hole() -> None:
    ct = ct_series()
    contours = []
    for k in range(10, 20):
        contours.append(("CLOSED_PLANAR", _rect(ct, k, -20, -20, 20, 20)))
        contours.append(("CLOSED_PLANAR", _rect(ct, k, -10, -10, 10, 10)[::-1]))  # either winding
    out = process(rtstruct(ct, [("ring", contours)]), ct)
    [roi] = out.rois
    assert roi.volume_cc == pytest.approx((40 * 40 - 20 * 20) * 25 / 1000, rel=1e-6)
    assert roi.planimetric_volume_cc == pytest.approx(roi.volume_cc, rel=1e-6)
    stack = build_stack(ct, pixels=False)
    raster = rasterize(parse_structure_set(rtstruct(ct, [("ring", contours)])).rois[0], stack.grid)
    centre = stack.grid.to_index(np.array([[1.25, 1.25, 0.0]]))[0]
    assert not raster.mask[
        15 - raster.k0, round(centre[1]) - raster.j0, round(centre[0]) - raster.i0
    ]


def test_several_contours_on_one_slice() -> None:
    ct = ct_series()
    r, c, n = frame(ct)
    contours = []
    for s, _ in plane_offsets(ct):
        for cx in (-30.0, 30.0):
            dz = s - 0.7
            if abs(dz) < 12:
                centre = np.array([cx, 0.0, 0.7]) + dz * n
                contours.append(("CLOSED_PLANAR", circle(centre, math.sqrt(144 - dz**2), r, c)))
    [roi] = process(rtstruct(ct, [("pair", contours)]), ct).rois
    assert roi.volume_cc == pytest.approx(2 * 4 / 3 * math.pi * 1.728, rel=0.01)
    assert roi.surface_cm2 == pytest.approx(2 * 4 * math.pi * 1.44, rel=0.03)
    assert abs(roi.centroid_mm[0]) < 0.3


def test_point_and_open_contours_are_skipped_with_a_warning() -> None:
    ct = ct_series()
    contours = sphere(ct, (0.0, 0.0, 0.0), 15.0)
    z = float(ct[20].ImagePositionPatient[2])
    contours.append(("POINT", np.array([[1.0, 2.0, z]])))
    contours.append(("OPEN_PLANAR", _rect(ct, 20, -40, -40, 40, 40)))
    only_point = [("POINT", np.array([[1.0, 2.0, z]]))]
    out = process(rtstruct(ct, [("s", contours), ("marker", only_point)]), ct)
    sphere_roi, marker = out.rois
    assert sphere_roi.volume_cc == pytest.approx(4 / 3 * math.pi * 3.375, rel=0.01)
    assert any("1 POINT contour(s) skipped" in w for w in out.warnings)
    assert any("1 OPEN_PLANAR contour(s) skipped" in w for w in out.warnings)
    assert marker.volume_cc == 0 and marker.surface_cm2 == 0 and marker.mean_value is None
    assert any("ROI 2: no closed planar contour" in w for w in out.warnings)


def test_degenerate_contours_are_skipped() -> None:
    ct = ct_series()
    z = float(ct[20].ImagePositionPatient[2])
    contours = [
        *box(ct, (0.0, 0.0, 0.0), (20.0, 20.0, 20.0)),
        ("CLOSED_PLANAR", np.array([[5.0, 5.0, z]])),
        ("CLOSED_PLANAR", np.array([[5.0, 5.0, z], [9.0, 9.0, z]])),
    ]
    out = process(rtstruct(ct, [("b", contours)]), ct)
    assert out.rois[0].volume_cc == pytest.approx(8.0, rel=1e-6)
    assert any("2 degenerate (1-2 point) contour(s) skipped" in w for w in out.warnings)


def test_non_uniform_slice_spacing() -> None:
    gaps = [2.0] * 10 + [3.0] * 6 + [5.0] * 4 + [1.0] * 10 + [2.5] * 8
    offsets = list(np.cumsum([0.0, *gaps]) - 40.0)
    ct = ct_series(offsets=offsets)
    out = process(rtstruct(ct, [("s", sphere(ct, (0.0, 0.0, 2.0), 20.0))]), ct)
    [roi] = out.rois
    assert roi.planimetric_volume_cc == pytest.approx(4 / 3 * math.pi * 8, rel=0.02)
    assert roi.volume_cc == pytest.approx(roi.planimetric_volume_cc, rel=0.01)
    assert roi.surface_cm2 == pytest.approx(4 * math.pi * 4, rel=0.03)
    assert abs(roi.centroid_mm[2] - 2.0) < 0.5
    assert any("non-uniform slice spacing" in w for w in out.warnings)
    stack = build_stack(ct, pixels=False)
    image = mask_image(
        rasterize(
            parse_structure_set(rtstruct(ct, [("s", sphere(ct, (0, 0, 2.0), 20.0))])).rois[0],
            stack.grid,
        ),
        stack.grid,
    )
    assert image.GetSpacing()[2] == pytest.approx(1.0, rel=0.01)
    # resampled onto the finest spacing, the mask still sits where the contours are
    mask = sitk.GetArrayFromImage(image)
    kk, jj, ii = np.nonzero(mask)
    points = np.array(
        [
            image.TransformIndexToPhysicalPoint((int(a), int(b), int(c)))
            for a, b, c in zip(ii, jj, kk, strict=True)
        ]
    )
    centre = np.array([0.0, 0.0, 2.0])
    far = np.linalg.norm(points - centre, axis=1).max()
    assert far <= 20.0 + 2.5  # half of the thickest (5 mm) slab at most
    assert np.allclose(points.mean(axis=0), centre, atol=0.5)
    voxel = float(np.prod(image.GetSpacing()))
    assert mask.sum() * voxel / 1000 == pytest.approx(4 / 3 * math.pi * 8, rel=0.03)


ROTATED = (math.cos(0.5), math.sin(0.5), 0.0, -math.sin(0.5), math.cos(0.5), 0.0)
OBLIQUE = (1.0, 0.0, 0.0, 0.0, math.cos(0.3), -math.sin(0.3))


@pytest.mark.parametrize("orientation", [FFS, ROTATED, OBLIQUE], ids=["FFS", "rotated", "oblique"])
def test_non_hfs_orientations(orientation: tuple[float, ...]) -> None:
    ct = ct_series(orientation=orientation, position="FFS" if orientation == FFS else "HFS")
    centre = (12.0, -7.0, 3.0)
    out = process(rtstruct(ct, [("s", sphere(ct, centre, 20.0))]), ct)
    [roi] = out.rois
    assert roi.volume_cc == pytest.approx(4 / 3 * math.pi * 8, rel=0.01)
    assert roi.surface_cm2 == pytest.approx(4 * math.pi * 4, rel=0.03)
    assert np.allclose(roi.centroid_mm, centre, atol=0.3)
    lo, hi = np.array(roi.bounding_box_mm[:3]), np.array(roi.bounding_box_mm[3:])
    assert np.all(lo >= np.array(centre) - 20.01) and np.all(hi <= np.array(centre) + 20.01)


def test_roi_touching_the_image_edge() -> None:
    ct = ct_series()  # x from -78.75 to 78.75 (pixel centres); image edge at x = 80
    out = process(rtstruct(ct, [("edge", box(ct, (80.0, 0.0, 0.0), (40.0, 20.0, 20.0)))]), ct)
    [roi] = out.rois
    assert roi.volume_cc == pytest.approx(20 * 20 * 20 / 1000, rel=1e-6)  # the half inside
    assert roi.planimetric_volume_cc == pytest.approx(16.0, rel=1e-6)
    assert roi.volume_mismatch
    # closed on the image edge; a 20 mm cube on 2.5 mm voxels loses ~3% at its chamfered edges
    assert roi.surface_cm2 == pytest.approx(24.0, rel=0.05)
    assert any("beyond the image; mask clipped" in w for w in out.warnings)


def test_wrong_or_incomplete_image_series_is_an_error() -> None:
    ct = ct_series()
    rs = rtstruct(ct, [("s", sphere(ct, (0.0, 0.0, 0.0), 10.0))])
    with pytest.raises(RtStructError, match="incomplete: 2 of 40 referenced images missing"):
        process(rs, ct[:19] + ct[21:])
    with pytest.raises(RtStructError, match="not the series the structure set references"):
        process(rs, ct_series(study_uid=ct[0].StudyInstanceUID))


class FakeSource:
    """A source holding a study's RTSTRUCT but none (or part) of its CT."""

    def __init__(self, files: list[Dataset], held_ct: int) -> None:
        self.files = files
        self.held_ct = held_ct

    def _bytes(self, ds: Dataset) -> bytes:
        from io import BytesIO

        buf = BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
        return buf.getvalue()

    async def find_series(self, query: Any) -> list[SeriesRecord]:
        rs = self.files[-1]
        return [SeriesRecord(rs.SeriesInstanceUID, rs.StudyInstanceUID, "RTSTRUCT")]

    async def find_instances(self, query: Any) -> list[InstanceRecord]:
        ct = self.files[: self.held_ct]
        return [
            InstanceRecord(d.SOPInstanceUID, d.SeriesInstanceUID, d.StudyInstanceUID) for d in ct
        ]

    async def retrieve_study(self, study: str, series: Sequence[str] = ()) -> AsyncIterator[bytes]:
        for ds in self.files[: self.held_ct] + self.files[-1:]:
            if ds.SeriesInstanceUID in series:
                yield self._bytes(ds)


@pytest.mark.parametrize(("held", "message"), [(0, "is not in the source"), (30, "30 of 40")])
def test_job_missing_referenced_series(tmp_path: Path, held: int, message: str) -> None:
    ct = ct_series()
    rs = rtstruct(ct, [("s", sphere(ct, (0.0, 0.0, 0.0), 10.0))])
    settings = SimpleNamespace(sources=[SimpleNamespace(id="fake")], results_dir=tmp_path)
    runtime = SimpleNamespace(settings=settings, sources={"fake": FakeSource([*ct, rs], held)})
    handle = job_base.RecordingHandle("job-1")
    spec = RtStructSpec(source="fake", study_uid=rs.StudyInstanceUID)
    with pytest.raises(JobError, match=message):
        asyncio.run(job.run(handle, runtime, spec))  # type: ignore[arg-type]
    assert handle.events[0][1] == "fetch"
    assert not (tmp_path / "rtstruct" / "job-1" / ".input").exists()


def test_validate() -> None:
    settings = parse_settings(
        {"sources": [{"id": "orthanc", "kind": "orthanc", "url": "http://127.0.0.1:1"}]}, {}
    )
    spec = RtStructSpec.parse({"source": "orthanc", "studyInstanceUid": " 1.2 "}, settings)
    assert spec == RtStructSpec(source="orthanc", study_uid="1.2")
    with pytest.raises(InvalidInput, match="source"):
        RtStructSpec.parse({"source": "nope", "studyInstanceUid": "1.2"}, settings)
    with pytest.raises(InvalidInput, match="studyInstanceUid"):
        RtStructSpec.parse({"source": "orthanc"}, settings)
