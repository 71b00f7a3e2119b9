"""Contours of one ROI onto the image grid, inside the ROI's bounding box only.

Implements the contour semantics of PS3.3 C.8.8.6 ROI Contour Module: only
CLOSED_PLANAR contours enclose a region (C.8.8.6.1: POINT, OPEN_PLANAR and
OPEN_NONPLANAR do not), the last point connects to the first, and several
contours of one ROI on one plane combine by the even-odd rule, so an inner
contour is a hole (the "keyhole"-free hole convention, C.8.8.6.3). A voxel is
inside when its centre is inside the region; pixel centres follow C.7.6.2.1.1.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from workers.dicom.rtstruct.grid import ImageGrid
from workers.dicom.rtstruct.model import CLOSED_PLANAR, RoiDef

Polygon = NDArray[np.float64]  # (n, 2): fractional (column, row)
OFF_PLANE = 0.1  # fraction of a slice gap a contour may lie off its slice without a warning


@dataclass(slots=True)
class RoiRaster:
    """The mask of one ROI in its bounding box: voxel (k, j, i) = grid (k0+k, j0+j, i0+i)."""

    k0: int
    j0: int
    i0: int
    mask: NDArray[np.bool_]  # (nk, nj, ni)
    polygons: dict[int, list[Polygon]]  # grid slice -> polygons on it
    points_mm: NDArray[np.float64]  # every vertex used, patient mm (n, 3)
    planimetric_mm3: float
    clipped: bool  # some contour extends beyond the image
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when no voxel is inside."""
        return not self.mask.any()


def shoelace(poly: Polygon, sx: float, sy: float) -> float:
    """Unsigned area in mm² of a polygon given in (column, row) units."""
    x, y = poly[:, 0] * sx, poly[:, 1] * sy
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def inside(poly: Polygon, x: float, y: float) -> bool:
    """Even-odd point-in-polygon test."""
    xa, ya = poly[:, 0], poly[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    crosses = (ya <= y) != (yb <= y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = xa + (y - ya) * (xb - xa) / (yb - ya)
    return bool(np.count_nonzero(crosses & (xs > x)) % 2)


def slice_area(polys: list[Polygon], sx: float, sy: float) -> float:
    """Even-odd area of non-crossing polygons on one plane: nesting depth decides the sign."""
    total = 0.0
    for n, p in enumerate(polys):
        depth = sum(inside(q, p[0, 0], p[0, 1]) for m, q in enumerate(polys) if m != n)
        total += shoelace(p, sx, sy) * (-1 if depth % 2 else 1)
    return max(total, 0.0)


def fill_even_odd(polys: list[Polygon], j0: int, nj: int, i0: int, ni: int) -> NDArray[np.bool_]:
    """Pixels (nj, ni) of the window at (j0, i0) whose centres are inside, even-odd rule.

    Each edge toggles the pixels right of its crossing with each pixel-centre row
    (half-open in y), so only crossings are visited, never the whole window per edge.
    """
    xa = np.concatenate([p[:, 0] for p in polys])
    ya = np.concatenate([p[:, 1] for p in polys])
    xb = np.concatenate([np.roll(p[:, 0], -1) for p in polys])
    yb = np.concatenate([np.roll(p[:, 1], -1) for p in polys])
    lo, hi = np.minimum(ya, yb), np.maximum(ya, yb)
    first = np.maximum(np.ceil(lo), j0).astype(np.int64)
    last = np.minimum(np.ceil(hi) - 1, j0 + nj - 1).astype(np.int64)
    count = np.maximum(last - first + 1, 0)
    toggles = np.zeros((nj, ni + 1), dtype=np.int32)
    total = int(count.sum())
    if total:
        edge = np.repeat(np.arange(len(xa)), count)
        starts = np.cumsum(count) - count
        rows = first[edge] + (np.arange(total) - starts[edge])
        t = (rows - ya[edge]) / (yb[edge] - ya[edge])
        xs = xa[edge] + t * (xb[edge] - xa[edge])
        cols = np.clip(np.floor(xs).astype(np.int64) + 1 - i0, 0, ni)
        np.add.at(toggles, (rows - j0, cols), 1)
    return np.asarray(np.cumsum(toggles[:, :ni], axis=1) & 1, dtype=bool)


def _assign(
    roi: RoiDef, grid: ImageGrid
) -> tuple[dict[int, list[Polygon]], list[NDArray[np.float64]], list[str]]:
    polygons: dict[int, list[Polygon]] = {}
    used: list[NDArray[np.float64]] = []
    skipped: Counter[str] = Counter()
    between = 0
    for contour in roi.contours:
        if contour.geometric_type != CLOSED_PLANAR:
            skipped[contour.geometric_type] += 1
            continue
        if len(contour.points) < 3:
            skipped["degenerate (1-2 point)"] += 1
            continue
        idx = grid.to_index(contour.points)
        k_mean = float(idx[:, 2].mean())
        k = round(k_mean)
        if np.ptp(idx[:, 2]) > OFF_PLANE:
            skipped["non-axial (not parallel to the slices)"] += 1
            continue
        if not 0 <= k < grid.slices:
            skipped["out-of-series (beyond the first or last slice)"] += 1
            continue
        if abs(k - k_mean) > OFF_PLANE:
            between += 1
        polygons.setdefault(k, []).append(idx[:, :2])
        used.append(contour.points)
    warnings = [
        f"ROI {roi.number}: {n} {what} contour(s) skipped" for what, n in sorted(skipped.items())
    ]
    if between:
        warnings.append(
            f"ROI {roi.number}: {between} contour(s) off their slice, put on the nearest"
        )
    return polygons, used, warnings


def rasterize(roi: RoiDef, grid: ImageGrid) -> RoiRaster:
    """The ROI's mask, built in its bounding box (clipped to the image), plus planimetry."""
    polygons, used, warnings = _assign(roi, grid)
    sx, sy = grid.col_spacing, grid.row_spacing
    if not polygons:
        warnings.append(f"ROI {roi.number}: no closed planar contour on the image grid")
        return RoiRaster(
            0, 0, 0, np.zeros((0, 0, 0), bool), {}, np.zeros((0, 3)), 0.0, False, warnings
        )
    allpts = np.concatenate([p for ps in polygons.values() for p in ps])
    i0 = max(0, int(np.ceil(allpts[:, 0].min())))
    i1 = min(grid.columns, int(np.floor(allpts[:, 0].max())) + 1)
    j0 = max(0, int(np.ceil(allpts[:, 1].min())))
    j1 = min(grid.rows, int(np.floor(allpts[:, 1].max())) + 1)
    clipped = bool(
        allpts[:, 0].min() < -0.5
        or allpts[:, 1].min() < -0.5
        or allpts[:, 0].max() > grid.columns - 0.5
        or allpts[:, 1].max() > grid.rows - 0.5
    )
    if clipped:
        warnings.append(f"ROI {roi.number}: contours extend beyond the image; mask clipped")
    k0, k1 = min(polygons), max(polygons)
    ni, nj = max(i1 - i0, 0), max(j1 - j0, 0)
    mask = np.zeros((k1 - k0 + 1, nj, ni), dtype=bool)
    slabs = grid.slab_thickness()
    planimetric = 0.0
    for k, polys in polygons.items():
        if ni and nj:
            mask[k - k0] = fill_even_odd(polys, j0, nj, i0, ni)
        planimetric += slice_area(polys, sx, sy) * float(slabs[k])
    return RoiRaster(
        k0, j0, i0, mask, polygons, np.concatenate(used), planimetric, clipped, warnings
    )
