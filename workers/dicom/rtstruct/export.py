"""The export writer: NIfTI masks, STL meshes and the JSON summary, written to a directory.

NIfTI masks carry the image grid's geometry (PS3.3 C.7.6.2.1.1): origin = Image
Position (Patient) of the first slice along the normal, direction columns = row,
column and slice-normal cosines, spacing = Pixel Spacing and slice spacing. ITK
works in LPS, as DICOM does, and the NIfTI writer stores the RAS equivalent, so
a viewer overlays the mask on the CT. Non-uniform slice spacing cannot be
stored in NIfTI: such masks are resampled (nearest slab) to the smallest gap.
STL meshes are in DICOM patient mm (LPS).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from vtkmodules.vtkCommonDataModel import vtkPolyData
from vtkmodules.vtkIOGeometry import vtkSTLWriter

from workers.dicom.rtstruct.arriving import write_whole
from workers.dicom.rtstruct.grid import ImageGrid
from workers.dicom.rtstruct.raster import RoiRaster


def nifti_axis(grid: ImageGrid) -> tuple[NDArray[np.int64], float]:
    """Source slice of each NIfTI slice, and the NIfTI slice spacing (uniform grid)."""
    if grid.uniform:
        return np.arange(grid.slices), grid.slice_spacing
    first, last = float(grid.positions[0]), float(grid.positions[-1])
    n = round((last - first) / float(grid.gaps.min())) + 1
    spacing = (last - first) / (n - 1)
    bounds = (grid.positions[1:] + grid.positions[:-1]) / 2
    source = np.searchsorted(bounds, first + spacing * np.arange(n))
    return np.asarray(source, dtype=np.int64), spacing


def mask_image(raster: RoiRaster, grid: ImageGrid, crop: bool = False) -> sitk.Image:
    """The ROI mask (uint8, 1 inside) with the grid's geometry: the full grid, or its
    bounding box only when `crop` (same spacing and direction, origin at the box corner).
    """
    source, spacing = nifti_axis(grid)
    nk, nj, ni = raster.mask.shape
    wanted = np.nonzero((source >= raster.k0) & (source < raster.k0 + nk))[0] if nk else source[:0]
    if crop and wanted.size and nj and ni:
        array = np.ascontiguousarray(raster.mask[source[wanted] - raster.k0], dtype=np.uint8)
        corner = np.array([raster.i0, raster.j0, int(wanted[0])], dtype=np.float64)
    else:
        array = np.zeros((len(source), grid.rows, grid.columns), dtype=np.uint8)
        if wanted.size and nj and ni:
            box = (wanted, slice(raster.j0, raster.j0 + nj), slice(raster.i0, raster.i0 + ni))
            array[box] = raster.mask[source[wanted] - raster.k0]
        corner = np.zeros(3)
    image = sitk.GetImageFromArray(array)
    origin, steps, direction = _placed(grid, spacing, corner)
    image.SetOrigin(origin)
    image.SetSpacing(steps)
    image.SetDirection(direction)
    return image


def _placed(
    grid: ImageGrid, spacing: float, corner: NDArray[np.float64]
) -> tuple[list[float], list[float], list[float]]:
    """Origin, spacing and direction of a mask whose voxel 0 is grid voxel `corner`."""
    direction = np.column_stack([grid.row_dir, grid.col_dir, grid.normal])
    steps = np.array([grid.col_spacing, grid.row_spacing, spacing])
    origin = grid.origin + direction @ (corner * steps)
    return (
        [float(v) for v in origin],
        [float(v) for v in steps],
        [float(v) for v in direction.ravel()],
    )


def grid_geometry(grid: ImageGrid) -> dict[str, list[float]]:
    """The full-grid mask's NIfTI geometry (size, origin, spacing, direction)."""
    source, spacing = nifti_axis(grid)
    origin, steps, direction = _placed(grid, spacing, np.zeros(3))
    size = [float(grid.columns), float(grid.rows), float(len(source))]
    return {"size": size, "origin": origin, "spacing": steps, "direction": direction}


def uncrop(cropped: Path, geometry: dict[str, list[float]], out: Path) -> Path:
    """Write the full-grid mask of a bounding-box mask (zeros outside the box)."""
    box = sitk.ReadImage(str(cropped), sitk.sitkUInt8)
    full = sitk.Image([int(v) for v in geometry["size"]], sitk.sitkUInt8)
    full.SetOrigin(geometry["origin"])
    full.SetSpacing(geometry["spacing"])
    full.SetDirection(geometry["direction"])
    corner = full.TransformPhysicalPointToIndex(box.GetOrigin())
    full = sitk.Paste(full, box, box.GetSize(), [0, 0, 0], corner)
    # written whole, then renamed; the NIfTI writer wants the name to end in .nii.gz, and
    # two first downloads at once (two gateway processes) each write their own
    tmp = out.with_name(f".{uuid.uuid4().hex}.{out.name}")
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(tmp))
    writer.SetUseCompression(True)
    writer.SetCompressionLevel(1)
    writer.Execute(full)
    os.replace(tmp, out)
    return out


def write_nifti(path: Path, raster: RoiRaster, grid: ImageGrid, crop: bool = False) -> Path:
    """Write the mask as gzipped NIfTI."""
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.SetUseCompression(True)
    writer.SetCompressionLevel(1)  # masks are mostly zeros: level 1 is as small, far faster
    writer.Execute(mask_image(raster, grid, crop))
    return path


def write_stl(path: Path, mesh: vtkPolyData) -> Path:
    """Write the mesh as binary STL (patient mm)."""
    writer = vtkSTLWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(mesh)
    writer.SetFileTypeToBinary()
    writer.Write()
    return path


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write `data` as UTF-8 JSON, atomically (write then rename)."""
    text = json.dumps(data, ensure_ascii=False, indent=1, allow_nan=False)
    return write_whole(path, text.encode("utf-8"))


def safe_name(number: int, name: str) -> str:
    """A file stem for an ROI: its number and a filesystem-safe version of its name."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40]
    return f"roi{number:03d}_{cleaned or 'unnamed'}"


def run_parallel(tasks: Sequence[Callable[[], object]], threads: int) -> list[object]:
    """Run writer tasks on `threads` threads (the libraries release the GIL while writing)."""
    if threads <= 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=min(threads, len(tasks))) as pool:
        return list(pool.map(lambda t: t(), tasks))
