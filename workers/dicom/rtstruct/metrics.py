"""Per-ROI measures: volumes, surface, centroid, extent and image statistics.

Geometry follows PS3.3 C.7.6.2.1.1 (voxel centres in patient mm) and the
contour semantics of C.8.8.6; values are rescaled stored values (C.11.1, HU for
CT). A slice's voxels stand for a slab half-way to each neighbouring slice.
"""

from __future__ import annotations

import numpy as np

from workers.dicom.rtstruct.grid import ImageStack
from workers.dicom.rtstruct.model import RoiDef, RoiResult
from workers.dicom.rtstruct.raster import RoiRaster
from workers.dicom.rtstruct.surface import Surface, area_mm2

MISMATCH = 0.05  # flag an ROI whose mask and planimetric volumes differ by more than this


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def roi_metrics(roi: RoiDef, raster: RoiRaster, stack: ImageStack, surface: Surface) -> RoiResult:
    """Measures of one ROI; `surface` is its iso-surface (patient mm)."""
    grid = stack.grid
    slabs = grid.slab_thickness()
    pixel = grid.col_spacing * grid.row_spacing
    weight = 0.0
    moment = np.zeros(3)
    total, count = 0.0, 0
    lo, hi = np.inf, -np.inf
    nk, nj, ni = raster.mask.shape
    rows = slice(raster.j0, raster.j0 + nj)
    cols = slice(raster.i0, raster.i0 + ni)
    for dk in range(nk):
        m = raster.mask[dk]
        n = int(np.count_nonzero(m))
        if not n:
            continue
        k = raster.k0 + dk
        jj, ii = np.nonzero(m)
        centre = grid.to_patient(np.array([[ii.mean() + raster.i0, jj.mean() + raster.j0, k]]))[0]
        w = n * float(slabs[k])
        moment += w * centre
        weight += w
        values = stack.values(k, rows, cols, m)
        if values.size:
            total += float(values.sum())
            count += values.size
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    voxel_mm3 = weight * pixel
    volume = surface.sampled_volume_mm3 / 1000
    planimetric = raster.planimetric_mm3 / 1000
    pts = raster.points_mm
    bbox = [*pts.min(axis=0), *pts.max(axis=0)] if len(pts) else []
    warnings = list(raster.warnings)
    if voxel_mm3 == 0 and raster.polygons:
        warnings.append(f"ROI {roi.number}: no voxel centre inside its contours")
    return RoiResult(
        number=roi.number,
        name=roi.name,
        volume_cc=_round(volume),
        planimetric_volume_cc=_round(planimetric),
        # the mask (voxel count) against the contours: flags a mask too coarse to trust
        volume_mismatch=bool(
            planimetric > 0 and abs(voxel_mm3 / 1000 - planimetric) > MISMATCH * planimetric
        ),
        surface_cm2=_round(area_mm2(surface.mesh) / 100),
        centroid_mm=[_round(v, 3) for v in (moment / weight if weight else np.zeros(3))],
        bounding_box_mm=[_round(v, 3) for v in bbox],
        slice_count=len(raster.polygons),
        mean_value=_round(total / count, 3) if count else None,
        min_value=lo if count else None,
        max_value=hi if count else None,
        voxel_volume_cc=_round(voxel_mm3 / 1000),
        warnings=warnings,
    )
