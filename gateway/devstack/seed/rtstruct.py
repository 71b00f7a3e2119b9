"""Analytic geometry of the RT phantom: a CT grid, spheres and a box.

Everything is in patient coordinates (mm, LPS as in DICOM PS3.3 C.7.6.2.1.1).
Contours are closed planar polygons on the CT slice planes; sphere contour
points lie exactly on the circle where the slice cuts the sphere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Vec3 = tuple[float, float, float]
Point = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Grid:
    """An axial CT volume centred on the origin; slice spacing equals the thickness."""

    rows: int = 64
    columns: int = 64
    spacing: float = 2.5
    thickness: float = 2.5
    slices: int = 40

    def z(self, k: int) -> float:
        """Patient z of slice `k` (0 is the most inferior)."""
        return (k - (self.slices - 1) / 2) * self.thickness

    def position(self, k: int) -> Vec3:
        """ImagePositionPatient of slice `k` (centre of the first pixel)."""
        x0 = -(self.columns - 1) / 2 * self.spacing
        y0 = -(self.rows - 1) / 2 * self.spacing
        return (x0, y0, self.z(k))

    def pixel_centres(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Meshgrid (x, y) of pixel centres, shape (rows, columns)."""
        x0, y0, _ = self.position(0)
        xs = x0 + self.spacing * np.arange(self.columns)
        ys = y0 + self.spacing * np.arange(self.rows)
        gx, gy = np.meshgrid(xs, ys)
        return gx, gy


@dataclass(frozen=True, slots=True)
class Sphere:
    """A sphere of `radius` mm around `center`."""

    name: str
    center: Vec3
    radius: float
    hu: int
    color: tuple[int, int, int]
    interpreted_type: str = "ORGAN"
    kind: str = "sphere"

    @property
    def volume_mm3(self) -> float:
        """4/3 π r³."""
        return 4.0 / 3.0 * math.pi * self.radius**3

    @property
    def surface_mm2(self) -> float:
        """4 π r²."""
        return 4.0 * math.pi * self.radius**2

    def section_radius(self, z: float) -> float | None:
        """Radius of the circle the plane at `z` cuts, None when it misses."""
        dz = z - self.center[2]
        if abs(dz) >= self.radius:
            return None
        return math.sqrt(self.radius**2 - dz**2)

    def contour(self, z: float) -> list[Point] | None:
        """Counter-clockwise points on the section circle (about one per 1.5 mm)."""
        r = self.section_radius(z)
        if r is None:
            return None
        n = max(12, math.ceil(2 * math.pi * r / 1.5))
        cx, cy, _ = self.center
        return [
            (cx + r * math.cos(2 * math.pi * i / n), cy + r * math.sin(2 * math.pi * i / n), z)
            for i in range(n)
        ]

    def mask(self, gx: NDArray[np.float64], gy: NDArray[np.float64], z: float) -> NDArray[np.bool_]:
        """Pixels whose centre lies inside the sphere on plane `z`."""
        cx, cy, cz = self.center
        return np.asarray((gx - cx) ** 2 + (gy - cy) ** 2 + (z - cz) ** 2 <= self.radius**2)


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box between corners `lo` and `hi`."""

    name: str
    lo: Vec3
    hi: Vec3
    hu: int
    color: tuple[int, int, int]
    interpreted_type: str = "CONTROL"
    kind: str = "box"

    @property
    def center(self) -> Vec3:
        """Midpoint of the corners."""
        return (
            (self.lo[0] + self.hi[0]) / 2,
            (self.lo[1] + self.hi[1]) / 2,
            (self.lo[2] + self.hi[2]) / 2,
        )

    @property
    def size(self) -> Vec3:
        """Edge lengths (x, y, z) in mm."""
        return (self.hi[0] - self.lo[0], self.hi[1] - self.lo[1], self.hi[2] - self.lo[2])

    @property
    def volume_mm3(self) -> float:
        """dx · dy · dz."""
        dx, dy, dz = self.size
        return dx * dy * dz

    @property
    def surface_mm2(self) -> float:
        """2 (dx dy + dx dz + dy dz)."""
        dx, dy, dz = self.size
        return 2 * (dx * dy + dx * dz + dy * dz)

    def contour(self, z: float) -> list[Point] | None:
        """The rectangle on plane `z` (counter-clockwise), None outside the box."""
        if not self.lo[2] < z < self.hi[2]:
            return None
        (x0, y0, _), (x1, y1, _) = self.lo, self.hi
        return [(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)]

    def mask(self, gx: NDArray[np.float64], gy: NDArray[np.float64], z: float) -> NDArray[np.bool_]:
        """Pixels whose centre lies inside the box on plane `z`."""
        if not self.lo[2] < z < self.hi[2]:
            return np.zeros(gx.shape, dtype=bool)
        inside = (gx > self.lo[0]) & (gx < self.hi[0]) & (gy > self.lo[1]) & (gy < self.hi[1])
        return np.asarray(inside)


Shape = Sphere | Box

BODY_RADIUS_MM = 76.0


def phantom_shapes() -> tuple[Shape, ...]:
    """Two spheres and a box, disjoint, inside a 76 mm body cylinder of the default grid.

    Box faces lie on voxel boundaries of the default grid, sphere poles between slices.
    """
    return (
        Sphere("Sphere_r30", (-30.0, -10.0, 0.0), 30.0, 60, (255, 0, 0), "PTV"),
        Sphere("Sphere_r15", (35.0, 35.0, 10.0), 15.0, 200, (0, 255, 0), "ORGAN"),
        Box("Box_40x30x30", (10.0, -50.0, -20.0), (50.0, -20.0, 10.0), 400, (0, 0, 255)),
    )


def polygon_area(points: list[Point]) -> float:
    """Area of a planar polygon in the xy plane (shoelace), mm²."""
    total = 0.0
    for (x0, y0, _), (x1, y1, _) in zip(points, points[1:] + points[:1], strict=True):
        total += x0 * y1 - x1 * y0
    return abs(total) / 2


def contours(shape: Shape, grid: Grid) -> list[tuple[int, list[Point]]]:
    """(slice index, polygon) for every slice the shape crosses."""
    out = []
    for k in range(grid.slices):
        points = shape.contour(grid.z(k))
        if points:
            out.append((k, points))
    return out


def contour_volume_mm3(shape: Shape, grid: Grid) -> float:
    """Volume of the contour stack: Σ polygon area × slice thickness."""
    return sum(polygon_area(p) for _, p in contours(shape, grid)) * grid.thickness


def phantom_hu(grid: Grid, shapes: tuple[Shape, ...], k: int) -> NDArray[np.int16]:
    """Hounsfield units of slice `k`: air, a water cylinder, and each shape's HU."""
    gx, gy = grid.pixel_centres()
    hu = np.full(gx.shape, -1000, dtype=np.int16)
    hu[gx**2 + gy**2 <= BODY_RADIUS_MM**2] = 0
    z = grid.z(k)
    for shape in shapes:
        hu[shape.mask(gx, gy, z)] = shape.hu
    return hu
