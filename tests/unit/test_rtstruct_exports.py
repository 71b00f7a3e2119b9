"""Exports: NIfTI masks in the CT's physical space (LPS in ITK), STL in patient mm, JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkIOGeometry import vtkSTLReader

from tests.unit.test_rtstruct_builders import FFS, ct_series, rtstruct, sphere
from workers.dicom.rtstruct import GRID_FILE, full_grid_name, process
from workers.dicom.rtstruct.export import uncrop

OBLIQUE_FFS = (-math.cos(0.4), math.sin(0.4), 0.0, 0.0, 0.0, -1.0)  # coronal-ish, rotated
CENTRE = np.array([10.0, -5.0, 4.0])
RADIUS = 18.0


def _dicom_point(ds: object, i: int, j: int) -> np.ndarray:
    """PS3.3 C.7.6.2.1.1: P = S + i·Δc·X + j·Δr·Y, from the dataset alone."""
    iop = np.array(ds.ImageOrientationPatient, float)  # type: ignore[attr-defined]
    dr, dc = (float(v) for v in ds.PixelSpacing)  # type: ignore[attr-defined]
    ipp = np.array(ds.ImagePositionPatient, float)  # type: ignore[attr-defined]
    return np.asarray(ipp + i * dc * iop[:3] + j * dr * iop[3:])


def _normal(ct: list) -> np.ndarray:
    iop = np.array(ct[0].ImageOrientationPatient, float)
    return np.cross(iop[:3], iop[3:])


def _ct_pixel(ct: list, point: np.ndarray) -> np.ndarray:
    """The centre of the CT pixel nearest `point`, from each slice's own attributes."""
    iop = np.array(ct[0].ImageOrientationPatient, float)
    ds = min(ct, key=lambda d: abs(float((point - np.array(d.ImagePositionPatient)) @ _normal(ct))))
    dr, dc = (float(v) for v in ds.PixelSpacing)
    offset = point - np.array(ds.ImagePositionPatient, float)
    i, j = round(float(offset @ iop[:3]) / dc), round(float(offset @ iop[3:]) / dr)
    return _dicom_point(ds, i, j)


@pytest.mark.parametrize("orientation", [FFS, OBLIQUE_FFS], ids=["FFS", "oblique"])
@pytest.mark.parametrize("crop", [False, True], ids=["full", "crop"])
def test_nifti_world_coordinates(
    tmp_path: Path, orientation: tuple[float, ...], crop: bool
) -> None:
    ct = ct_series(rows=48, columns=56, spacing=(2.0, 2.5), orientation=orientation)
    out = process(rtstruct(ct, [("s", sphere(ct, CENTRE, RADIUS))]), ct, tmp_path, crop=crop)
    [roi] = out.rois
    assert roi.mask_file is not None
    image = sitk.ReadImage(str(tmp_path / roi.mask_file))
    # every voxel's physical point (ITK, LPS) is the DICOM patient coordinate of a CT pixel
    size = image.GetSize()
    for index in [(0, 0, 0), (size[0] - 1, 3, 1), (2, size[1] - 1, size[2] - 1)]:
        point = np.array(image.TransformIndexToPhysicalPoint(index))
        assert np.allclose(point, _ct_pixel(ct, point), atol=1e-3)
    if not crop:
        first = min(ct, key=lambda d: float(np.dot(d.ImagePositionPatient, _normal(ct))))
        assert np.allclose(image.GetOrigin(), _dicom_point(first, 0, 0), atol=1e-3)
    # and the mask lies where the contours are: voxel centres inside the sphere, centred on it
    mask = sitk.GetArrayFromImage(image)
    kk, jj, ii = np.nonzero(mask)
    points = np.array(
        [
            image.TransformIndexToPhysicalPoint((int(a), int(b), int(c)))
            for a, b, c in zip(ii, jj, kk, strict=True)
        ]
    )
    assert np.linalg.norm(points - CENTRE, axis=1).max() <= RADIUS + 1e-6
    assert np.allclose(points.mean(axis=0), CENTRE, atol=0.3)
    voxel = float(np.prod(image.GetSpacing()))
    assert mask.sum() * voxel / 1000 == pytest.approx(roi.voxel_volume_cc, rel=1e-6)


@pytest.mark.parametrize("orientation", [FFS, OBLIQUE_FFS], ids=["FFS", "oblique"])
def test_a_bounding_box_mask_uncropped_is_the_full_grid_mask(
    tmp_path: Path, orientation: tuple[float, ...]
) -> None:
    """The full-grid twin made from a bounding-box mask (on first download) is, voxel for
    voxel and in its geometry, the mask a full-grid job writes."""
    ct = ct_series(rows=48, columns=56, spacing=(2.0, 2.5), orientation=orientation)
    structures = rtstruct(ct, [("s", sphere(ct, CENTRE, RADIUS))])
    full = process(structures, ct, tmp_path / "full", crop=False)
    cropped = process(structures, ct, tmp_path / "crop", crop=True)
    assert full.grid_file is None and cropped.grid_file == GRID_FILE
    name = cropped.rois[0].mask_file
    assert name is not None
    grid = json.loads((tmp_path / "crop" / GRID_FILE).read_text())
    made = uncrop(tmp_path / "crop" / name, grid, tmp_path / "crop" / full_grid_name(name))
    want = sitk.ReadImage(str(tmp_path / "full" / str(full.rois[0].mask_file)))
    got = sitk.ReadImage(str(made))
    box = sitk.ReadImage(str(tmp_path / "crop" / name))
    assert box.GetSize() < want.GetSize(), "the job's mask is the bounding box"
    assert got.GetSize() == want.GetSize()
    assert np.allclose(got.GetOrigin(), want.GetOrigin(), atol=1e-4)
    assert np.allclose(got.GetSpacing(), want.GetSpacing())
    assert np.allclose(got.GetDirection(), want.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(want))


def test_stl_and_summary(tmp_path: Path) -> None:
    ct = ct_series(orientation=FFS)
    out = process(rtstruct(ct, [("Sphere 1/a", sphere(ct, CENTRE, RADIUS))]), ct, tmp_path)
    [roi] = out.rois
    assert roi.mesh_file == "roi001_Sphere_1_a.stl"
    reader = vtkSTLReader()
    reader.SetFileName(str(tmp_path / roi.mesh_file))
    reader.Update()
    points = vtk_to_numpy(reader.GetOutput().GetPoints().GetData())
    distance = np.linalg.norm(points - CENTRE, axis=1)
    assert abs(distance.mean() - RADIUS) < 0.5 and distance.max() < RADIUS + 1.5
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rois"][0]["volumeCc"] == roi.volume_cc
    assert summary["referencedSeriesInstanceUid"] == ct[0].SeriesInstanceUID
    assert summary["timings"]["total"] > 0
    # idempotent: a second run writes the same files
    before = sorted(p.name for p in tmp_path.iterdir())
    process(rtstruct(ct, [("Sphere 1/a", sphere(ct, CENTRE, RADIUS))]), ct, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
