"""Measures against analytic phantoms: volume within 1%, surface within 3%."""

from __future__ import annotations

import io
import math

import numpy as np
import pydicom
import pytest

from gateway.devstack.seed import build_demo
from tests.unit.test_rtstruct_builders import (
    box,
    circle,
    ct_series,
    frame,
    plane_offsets,
    rtstruct,
    sphere,
)
from workers.dicom.rtstruct import process

VOLUME_TOL, SURFACE_TOL = 0.01, 0.03
CENTRE = (1.3, -2.1, 0.7)


def _sphere_truth(r: float) -> tuple[float, float]:
    return 4 / 3 * math.pi * r**3 / 1000, 4 * math.pi * r**2 / 100


GRIDS = {
    "2.5mm": dict(rows=64, columns=64),
    "aniso-0.8x1.2-3mm": dict(
        rows=160, columns=110, spacing=(0.8, 1.2), offsets=[(k - 17) * 3.0 for k in range(35)]
    ),
}


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("radius", [10.0, 15.0, 20.0, 30.0])
def test_spheres(grid: str, radius: float) -> None:
    ct = ct_series(**GRIDS[grid])  # type: ignore[arg-type]
    out = process(rtstruct(ct, [("s", sphere(ct, CENTRE, radius))]), ct)
    [roi] = out.rois
    volume, surface = _sphere_truth(radius)
    assert roi.volume_cc == pytest.approx(volume, rel=VOLUME_TOL)
    assert roi.planimetric_volume_cc == pytest.approx(volume, rel=VOLUME_TOL)
    assert roi.surface_cm2 == pytest.approx(surface, rel=SURFACE_TOL)
    assert not roi.volume_mismatch
    assert np.allclose(roi.centroid_mm, CENTRE, atol=0.3)


@pytest.mark.parametrize("grid", GRIDS)
def test_box(grid: str) -> None:
    ct = ct_series(**GRIDS[grid])  # type: ignore[arg-type]
    z = 0.0 if grid == "2.5mm" else 1.5  # z faces on slab boundaries (half-way between slices)
    out = process(rtstruct(ct, [("b", box(ct, (0.3, 0.1, z), (40.0, 30.0, 30.0)))]), ct)
    [roi] = out.rois
    assert roi.volume_cc == pytest.approx(36.0, rel=VOLUME_TOL)
    assert roi.surface_cm2 == pytest.approx(66.0, rel=SURFACE_TOL)


def test_shell_with_hole() -> None:
    """A hollow sphere: outer r=30, inner r=15, the inner contours are holes."""
    ct = ct_series()
    r_dir, c_dir, n = frame(ct)
    ctr = np.array(CENTRE)
    contours = []
    for s, _ in plane_offsets(ct):
        dz = s - float(ctr @ n)
        for radius in (30.0, 15.0):
            if abs(dz) < radius:
                rs = math.sqrt(radius**2 - dz**2)
                contours.append(("CLOSED_PLANAR", circle(ctr + dz * n, rs, r_dir, c_dir)))
    out = process(rtstruct(ct, [("shell", contours)]), ct)
    [roi] = out.rois
    assert roi.volume_cc == pytest.approx(4 / 3 * math.pi * (27.0 - 3.375), rel=VOLUME_TOL)
    assert roi.surface_cm2 == pytest.approx(4 * math.pi * (9.0 + 2.25), rel=SURFACE_TOL)


def test_seeded_phantom() -> None:
    """The demo seeder's RT study: two spheres and a box with known measures."""
    plan = build_demo(patients=1)
    [truth] = plan.truth.rtstructs
    files = [pydicom.dcmread(io.BytesIO(b)) for b in plan.iter_files(truth.sources[0])]
    files = [ds for ds in files if ds.StudyInstanceUID == truth.study_uid]
    ct = [ds for ds in files if ds.Modality == "CT"]
    [rs] = [ds for ds in files if ds.Modality == "RTSTRUCT"]
    out = process(rs, ct)
    assert out.referenced_series_uid == truth.ct_series_uid
    for roi, expected in zip(out.rois, truth.rois, strict=True):
        assert roi.name == expected.name
        assert roi.volume_cc == pytest.approx(expected.volume_cm3, rel=VOLUME_TOL)
        assert roi.planimetric_volume_cc == pytest.approx(expected.contour_volume_cm3, rel=1e-3)
        assert roi.surface_cm2 == pytest.approx(expected.surface_cm2, rel=SURFACE_TOL)
        assert np.allclose(roi.centroid_mm, expected.center_mm, atol=0.3)
        assert roi.slice_count == expected.contours
        assert roi.mean_value == roi.min_value == roi.max_value


def test_a_mask_too_coarse_for_its_roi_is_flagged() -> None:
    """A 4 mm sphere on a 2.5 mm grid: the voxel mask misses the contours' volume by > 5%."""
    ct = ct_series()
    out = process(rtstruct(ct, [("tiny", sphere(ct, CENTRE, 4.0))]), ct)
    [roi] = out.rois
    assert roi.voxel_volume_cc is not None and roi.planimetric_volume_cc
    gap = abs(roi.voxel_volume_cc - roi.planimetric_volume_cc) / roi.planimetric_volume_cc
    assert gap > 0.05 and roi.volume_mismatch


def test_a_large_roi_field_on_threads_equals_the_field_on_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A field large enough to be split over threads (a body contour) is the same field."""
    from workers.dicom.rtstruct import surface
    from workers.dicom.rtstruct.grid import build_stack
    from workers.dicom.rtstruct.parse import parse_structure_set
    from workers.dicom.rtstruct.raster import rasterize

    ct = ct_series(**GRIDS["aniso-0.8x1.2-3mm"])  # type: ignore[arg-type]
    ss = parse_structure_set(rtstruct(ct, [("s", sphere(ct, CENTRE, 30.0))]))
    stack = build_stack(ct)
    raster = rasterize(ss.rois[0], stack.grid)
    alone = surface.signed_field(raster, stack.grid, 1)
    monkeypatch.setattr(surface, "SPLIT_SAMPLES", 0)
    assert np.array_equal(surface.signed_field(raster, stack.grid, 1), alone)
