"""The image grid of a CT (or MR) series, as the RT-STRUCT engine sees it.

Implements the geometry of PS3.3 C.7.6.2 Image Plane Module (Image Position and
Orientation (Patient), Pixel Spacing; C.7.6.2.1.1 for the patient-to-pixel
mapping) and the rescale of C.8.2.1 CT Image Module / C.11.1 Modality LUT.
Slices are sorted along the slice normal (row × column direction cosines),
whatever the patient position (HFS, FFS, prone, oblique); spacing along the
normal may be non-uniform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from workers.dicom.rtstruct.model import RtStructError

Array = NDArray[np.float64]
POSITION_TOLERANCE_MM = 0.05


@dataclass(frozen=True, slots=True)
class ImageGrid:
    """Voxel grid: index (column i, row j, slice k) <-> patient mm.

    `row_dir` is the direction of increasing column index (first IOP triplet),
    `col_dir` of increasing row index; `positions` are the slice positions along
    `normal`, ascending, so k grows along the normal.
    """

    rows: int
    columns: int
    row_spacing: float  # mm between adjacent rows (PixelSpacing[0])
    col_spacing: float  # mm between adjacent columns (PixelSpacing[1])
    row_dir: Array
    col_dir: Array
    normal: Array
    origin: Array  # Image Position (Patient) of slice 0
    positions: Array  # (nz,) slice positions along the normal
    sop_uids: tuple[str, ...]
    nominal_thickness: float

    @property
    def slices(self) -> int:
        """Number of slices."""
        return len(self.positions)

    @property
    def gaps(self) -> Array:
        """Distances between consecutive slices (nz - 1,)."""
        return np.diff(self.positions)

    @property
    def uniform(self) -> bool:
        """True when the slices are equally spaced."""
        gaps = self.gaps
        return gaps.size == 0 or bool(np.ptp(gaps) <= POSITION_TOLERANCE_MM)

    @property
    def slice_spacing(self) -> float:
        """Mean spacing between slices (the nominal thickness for a single slice)."""
        gaps = self.gaps
        return float(gaps.mean()) if gaps.size else self.nominal_thickness

    def slab_thickness(self) -> Array:
        """Thickness each slice represents: half the gap to each neighbour (ends mirrored)."""
        if self.slices == 1:
            return np.array([self.nominal_thickness])
        gaps = self.gaps
        before = np.concatenate([gaps[:1], gaps])
        after = np.concatenate([gaps, gaps[-1:]])
        return np.asarray((before + after) / 2)

    def slice_position(self, k: Array) -> Array:
        """Position along the normal of (fractional) slice indices, extrapolated linearly."""
        k = np.asarray(k, dtype=np.float64)
        if self.slices == 1:
            return self.positions[0] + k * self.nominal_thickness
        idx = np.arange(self.slices, dtype=np.float64)
        pos = np.interp(k, idx, self.positions)
        first, last = self.gaps[0], self.gaps[-1]
        pos = np.where(k < 0, self.positions[0] + k * first, pos)
        return np.where(k > idx[-1], self.positions[-1] + (k - idx[-1]) * last, pos)

    def slice_index(self, s: Array) -> Array:
        """Fractional slice index of positions `s` along the normal (inverse of the above)."""
        s = np.asarray(s, dtype=np.float64)
        if self.slices == 1:
            return (s - self.positions[0]) / self.nominal_thickness
        idx = np.arange(self.slices, dtype=np.float64)
        k = np.interp(s, self.positions, idx)
        first, last = self.gaps[0], self.gaps[-1]
        k = np.where(s < self.positions[0], (s - self.positions[0]) / first, k)
        return np.where(s > self.positions[-1], idx[-1] + (s - self.positions[-1]) / last, k)

    def to_index(self, points: Array) -> Array:
        """Patient mm (n, 3) -> fractional (column, row, slice) (n, 3)."""
        d = np.asarray(points, dtype=np.float64) - self.origin
        col = d @ self.row_dir / self.col_spacing
        row = d @ self.col_dir / self.row_spacing
        k = self.slice_index(np.asarray(points) @ self.normal)
        return np.stack([col, row, k], axis=-1)

    def to_patient(self, index: Array) -> Array:
        """Fractional (column, row, slice) (n, 3) -> patient mm (n, 3)."""
        index = np.asarray(index, dtype=np.float64)
        along = self.slice_position(index[..., 2]) - float(self.origin @ self.normal)
        return np.asarray(
            self.origin
            + np.multiply.outer(index[..., 0] * self.col_spacing, self.row_dir)
            + np.multiply.outer(index[..., 1] * self.row_spacing, self.col_dir)
            + np.multiply.outer(along, self.normal)
        )


@dataclass(frozen=True, slots=True)
class ImageStack:
    """The grid plus stored pixel values and per-slice rescale (value = raw * slope + intercept)."""

    grid: ImageGrid
    raw: NDArray[np.generic] | None  # (nz, rows, columns), stored values
    slope: Array
    intercept: Array

    def values(self, k: int, rows: slice, cols: slice, mask: NDArray[np.bool_]) -> Array:
        """Rescaled values of slice `k` inside `mask` (shape of the rows × cols window)."""
        if self.raw is None:
            return np.empty(0)
        raw = self.raw[k, rows, cols][mask]
        return np.asarray(raw * self.slope[k] + self.intercept[k], dtype=np.float64)


def _vec(value: object, n: int, what: str) -> Array:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise RtStructError(f"image series has an invalid {what}") from exc
    if arr.size != n:
        raise RtStructError(f"image series has an invalid {what}")
    return arr


UNCOMPRESSED_LE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def native_dtype(ds: Dataset) -> str | None:
    """The NumPy type of the stored values when the pixel data is one native little-endian
    16-bit frame (read as is, PS3.5 A.1-A.2); None when it needs decoding."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if (
        syntax in UNCOMPRESSED_LE
        and int(ds.get("BitsAllocated", 0)) == 16
        and int(ds.get("SamplesPerPixel", 1)) == 1
        and int(ds.get("NumberOfFrames", 1) or 1) == 1
        and (int(ds.get("PixelRepresentation", 0)) == 0 or int(ds.get("BitsStored", 16)) == 16)
    ):
        return "<i2" if int(ds.get("PixelRepresentation", 0)) else "<u2"
    return None


def decoded_pixels(ds: Dataset) -> NDArray[np.generic]:
    """Stored values of one frame (C.7.6.3); native little-endian data is read without a copy."""
    dtype = native_dtype(ds)
    if dtype is not None:
        data = ds.PixelData
        if len(data) >= 2 * ds.Rows * ds.Columns:
            return np.frombuffer(data, dtype=dtype, count=ds.Rows * ds.Columns).reshape(
                ds.Rows, ds.Columns
            )
    return np.asarray(ds.pixel_array)


def _in_order(volume: NDArray[np.generic], order: list[int]) -> NDArray[np.generic]:
    """`volume[order]`, made in place (cycle by cycle, through one spare slice): no second
    volume is allocated."""
    done = [False] * len(order)
    spare = np.empty_like(volume[0]) if len(order) else volume
    for start in range(len(order)):
        if done[start] or order[start] == start:
            continue
        spare[...] = volume[start]
        k = start
        while order[k] != start:
            volume[k] = volume[order[k]]
            done[k] = True
            k = order[k]
        volume[k] = spare
        done[k] = True
    return volume


def build_stack(
    datasets: Sequence[Dataset], pixels: bool = True, decoded: NDArray[np.generic] | None = None
) -> ImageStack:
    """Sort the instances of one series along the slice normal and check they form a stack.

    `decoded`, when given, holds the stored values of `datasets[i]` at `decoded[i]`
    (`arriving.read_arriving` decodes them as they are read): reordered in place into
    slice order and used as the stack's pixels, neither decoded nor copied again.
    """
    if not datasets:
        raise RtStructError("image series has no instances")
    first = datasets[0]
    iop = _vec(first.get("ImageOrientationPatient"), 6, "Image Orientation (Patient)")
    spacing = _vec(first.get("PixelSpacing"), 2, "Pixel Spacing")
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    rows, columns = int(first.Rows), int(first.Columns)
    items = []
    for n, ds in enumerate(datasets):
        if (
            int(ds.Rows) != rows
            or int(ds.Columns) != columns
            or not np.allclose(
                _vec(ds.get("ImageOrientationPatient"), 6, "orientation"), iop, atol=1e-4
            )
            or not np.allclose(_vec(ds.get("PixelSpacing"), 2, "Pixel Spacing"), spacing, atol=1e-4)
        ):
            raise RtStructError("image series mixes sizes, orientations or pixel spacings")
        ipp = _vec(ds.get("ImagePositionPatient"), 3, "Image Position (Patient)")
        items.append((float(ipp @ normal), ipp, ds, n))
    items.sort(key=lambda t: t[0])
    positions = np.array([t[0] for t in items])
    if positions.size > 1 and np.min(np.diff(positions)) < POSITION_TOLERANCE_MM:
        raise RtStructError("image series has two slices at the same position")
    origin = items[0][1]
    for _, ipp, _, _ in items:
        d = ipp - origin
        if abs(d @ row_dir) > POSITION_TOLERANCE_MM or abs(d @ col_dir) > POSITION_TOLERANCE_MM:
            raise RtStructError("image series slices are not stacked along the normal")
    thickness = float(first.get("SliceThickness") or 0) or float(spacing.min())
    grid = ImageGrid(
        rows=rows,
        columns=columns,
        row_spacing=float(spacing[0]),
        col_spacing=float(spacing[1]),
        row_dir=row_dir,
        col_dir=col_dir,
        normal=normal,
        origin=origin,
        positions=positions,
        sop_uids=tuple(str(t[2].SOPInstanceUID) for t in items),
        nominal_thickness=thickness,
    )
    slope = np.array([float(t[2].get("RescaleSlope", 1) or 1) for t in items])
    intercept = np.array([float(t[2].get("RescaleIntercept", 0) or 0) for t in items])
    raw = None
    if pixels and decoded is not None and len(decoded) == len(items):
        raw = _in_order(decoded, [t[3] for t in items])
    elif pixels:
        raw = np.stack([decoded_pixels(t[2]) for t in items])
    return ImageStack(grid, raw, slope, intercept)
