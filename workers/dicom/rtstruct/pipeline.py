"""One structure set from datasets (or files) to measures and exports.

Checks the image series against the RT Structure Set's references (PS3.3
C.8.8.5: Referenced Frame of Reference, RT Referenced Series and Contour Image
Sequences), then per ROI: mask in its bounding box, iso-surface, measures and
exports. ROIs run on a few threads (NumPy, VTK and ITK release the GIL in their
heavy loops); this function is meant to run in a worker process.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from workers.dicom.rtstruct import export
from workers.dicom.rtstruct.arriving import STALL_S, read_arriving
from workers.dicom.rtstruct.grid import ImageStack, build_stack
from workers.dicom.rtstruct.metrics import roi_metrics
from workers.dicom.rtstruct.model import GRID_FILE, RoiDef, RoiResult, RtStructError, StructureSet
from workers.dicom.rtstruct.parse import parse_structure_set
from workers.dicom.rtstruct.raster import RoiRaster, rasterize
from workers.dicom.rtstruct.surface import Surface, iso_surface, smoothed

Step = Callable[[str, int, int], None]  # (phase, ROIs done, ROIs) after each ROI's step


def _quiet(phase: str, done: int, total: int) -> None:
    """No progress wanted."""


@dataclass(slots=True)
class Outcome:
    """The measures of a structure set, the files written and per-phase timings (s)."""

    structure_set: StructureSet
    referenced_series_uid: str
    rois: list[RoiResult]
    warnings: list[str]
    timings: dict[str, float]
    summary_file: str | None
    grid_file: str | None = None  # beside bounding-box masks: the full grid, for `uncrop`

    def as_json(self) -> dict[str, Any]:
        """JSON form (file names relative to the output directory)."""
        return {
            "studyInstanceUid": self.structure_set.study_uid,
            "seriesInstanceUid": self.structure_set.series_uid,
            "sopInstanceUid": self.structure_set.sop_instance_uid,
            "referencedSeriesInstanceUid": self.referenced_series_uid,
            "rois": [r.as_json() for r in self.rois],
            "warnings": self.warnings,
            "timings": self.timings,
            "summaryFile": self.summary_file,
            "gridFile": self.grid_file,
        }


def check_images(ss: StructureSet, images: Sequence[Dataset]) -> str:
    """The image series UID, after checking it is the complete series the set references."""
    if not images:
        raise RtStructError("the referenced image series has no instances")
    series = {str(ds.SeriesInstanceUID) for ds in images}
    if len(series) != 1:
        raise RtStructError("the images belong to more than one series")
    [uid] = series
    if ss.referenced_series_uids and uid not in ss.referenced_series_uids:
        raise RtStructError("the images are not the series the structure set references")
    frames = {str(ds.get("FrameOfReferenceUID", "")) for ds in images}
    if ss.frame_uids and not frames & set(ss.frame_uids):
        raise RtStructError("the images are not in the structure set's frame of reference")
    held = {str(ds.SOPInstanceUID) for ds in images}
    missing = [u for u in ss.referenced_image_uids if u not in held]
    if missing:
        raise RtStructError(
            f"the referenced image series is incomplete: {len(missing)} of "
            f"{len(ss.referenced_image_uids)} referenced images missing"
        )
    return uid


def _shape(roi: RoiDef, stack: ImageStack) -> tuple[RoiRaster, Surface, dict[str, float]]:
    """An ROI's mask and iso-surface."""
    t0 = time.perf_counter()
    raster = rasterize(roi, stack.grid)
    t1 = time.perf_counter()
    surface = iso_surface(raster, stack.grid)
    return raster, surface, {"masks": t1 - t0, "metrics": time.perf_counter() - t1}


def _measure(
    roi: RoiDef,
    raster: RoiRaster,
    surface: Surface,
    stack: ImageStack,
    out: Path | None,
    crop: bool,
) -> tuple[RoiResult, dict[str, float]]:
    """An ROI's measures and its NIfTI mask."""
    t0 = time.perf_counter()
    result = roi_metrics(roi, raster, stack, surface)
    t1 = time.perf_counter()
    if out is not None and not raster.empty:
        stem = export.safe_name(roi.number, roi.name)
        result.mask_file = export.write_nifti(out / f"{stem}.nii.gz", raster, stack.grid, crop).name
    return result, {"metrics": t1 - t0, "exports": time.perf_counter() - t1}


def _mesh(roi: RoiDef, surface: Surface, out: Path) -> tuple[str, dict[str, float]]:
    """An ROI's smoothed display mesh as STL; its file name."""
    t0 = time.perf_counter()
    stem = export.safe_name(roi.number, roi.name)
    name = export.write_stl(out / f"{stem}.stl", smoothed(surface.mesh)).name
    return name, {"exports": time.perf_counter() - t0}


def _each_roi(
    rois: Sequence[RoiDef],
    stack: ImageStack,
    out: Path | None,
    crop: bool,
    threads: int,
    step: Step = _quiet,
) -> tuple[list[RoiResult], list[dict[str, float]]]:
    """Every ROI on `threads` threads, in two steps: mask and surface, then measures and
    mask file alongside the display mesh, so that a large ROI's (a body contour's) last
    steps share the threads instead of ending alone on one."""
    timings: list[dict[str, float]] = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        shaped = {pool.submit(_shape, roi, stack): n for n, roi in enumerate(rois)}
        measured: dict[int, Future[tuple[RoiResult, dict[str, float]]]] = {}
        meshes: dict[int, Future[tuple[str, dict[str, float]]]] = {}
        for count, done in enumerate(as_completed(shaped), start=1):
            n = shaped[done]
            raster, surface, spent = done.result()
            step("masks", count, len(rois))
            timings.append(spent)
            measured[n] = pool.submit(_measure, rois[n], raster, surface, stack, out, crop)
            if out is not None and not raster.empty:
                meshes[n] = pool.submit(_mesh, rois[n], surface, out)
        results = []
        for n in range(len(rois)):
            result, spent = measured[n].result()
            step("metrics", n + 1, len(rois))
            timings.append(spent)
            if n in meshes:
                result.mesh_file, spent = meshes[n].result()
                timings.append(spent)
            step("exports", n + 1, len(rois))
            results.append(result)
    return results, timings


def process(
    rtstruct: Dataset,
    images: Sequence[Dataset],
    out_dir: Path | None = None,
    threads: int = 2,
    summary_name: str = "summary.json",
    crop: bool = False,
    step: Step = _quiet,
    decoded: NDArray[np.generic] | None = None,
    read_s: float = 0.0,
) -> Outcome:
    """Measure (and export, when `out_dir` is given) every ROI of one structure set.

    NIfTI masks cover the whole image grid, or only each ROI's bounding box when `crop`;
    `step` hears of each ROI's mask, measures and exports as they are done. `decoded`:
    the images' pixels, already decoded (see `build_stack`); `read_s`: seconds already
    spent reading them, counted in the parse and total timings.
    """
    start = time.perf_counter() - read_s
    ss = parse_structure_set(rtstruct)
    series_uid = check_images(ss, images)
    stack = build_stack(images, decoded=decoded)
    timings = {"parse": time.perf_counter() - start, "masks": 0.0, "metrics": 0.0, "exports": 0.0}
    warnings: list[str] = []
    if not stack.grid.uniform:
        warnings.append("non-uniform slice spacing: NIfTI masks resampled to the smallest gap")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    rois, spent = _each_roi(ss.rois, stack, out_dir, crop, threads, step)
    for t in spent:  # CPU time summed over threads
        for key, value in t.items():
            timings[key] += value
    for r in rois:
        warnings.extend(r.warnings)
    timings["total"] = time.perf_counter() - start
    outcome = Outcome(
        ss, series_uid, rois, warnings, {k: round(v, 4) for k, v in timings.items()}, None
    )
    if out_dir is not None and crop:
        outcome.grid_file = GRID_FILE
        export.write_json(out_dir / GRID_FILE, export.grid_geometry(stack.grid))
    if out_dir is not None:
        outcome.summary_file = summary_name
        export.write_json(out_dir / summary_name, outcome.as_json())
    return outcome


def process_files(
    rtstruct_path: str | Path,
    image_paths: Sequence[str | Path],
    out_dir: str | Path | None = None,
    threads: int = 2,
    summary_name: str = "summary.json",
    crop: bool = False,
    progress_file: str | Path | None = None,
) -> dict[str, Any]:
    """`process` on files; returns the JSON form (a picklable entry point for process pools).

    With `progress_file`, a line "<phase> <done> <total>" is appended to it after each
    ROI's step, for the caller in another process to follow (`read_steps`)."""
    try:
        rtstruct = pydicom.dcmread(rtstruct_path)
        images = [pydicom.dcmread(p) for p in image_paths]
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise RtStructError(f"unreadable DICOM file ({type(exc).__name__})") from exc
    target = Path(out_dir) if out_dir is not None else None
    step = _quiet if progress_file is None else functools.partial(_append, Path(progress_file))
    return process(rtstruct, images, target, threads, summary_name, crop, step).as_json()


def process_arriving(
    rtstruct_path: str | Path,
    image_folder: str | Path,
    out_dir: str | Path | None = None,
    threads: int = 2,
    summary_name: str = "summary.json",
    crop: bool = False,
    progress_file: str | Path | None = None,
    expected: int = 0,
    stall_s: float = STALL_S,
) -> dict[str, Any]:
    """`process_files` on an image series still being written into `image_folder`
    (see `arriving`): each image is read and decoded as it appears, so the parse
    overlaps the download. `expected`: the number of images announced."""
    start = time.perf_counter()
    try:
        rtstruct = pydicom.dcmread(rtstruct_path)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise RtStructError(f"unreadable DICOM file ({type(exc).__name__})") from exc
    arrived = read_arriving(image_folder, expected, stall_s)
    target = Path(out_dir) if out_dir is not None else None
    step = _quiet if progress_file is None else functools.partial(_append, Path(progress_file))
    return process(
        rtstruct,
        arrived.datasets,
        target,
        threads,
        summary_name,
        crop,
        step,
        decoded=arrived.pixels,
        read_s=time.perf_counter() - start,
    ).as_json()


def _append(path: Path, phase: str, done: int, total: int) -> None:
    with path.open("a", encoding="ascii") as out:
        out.write(f"{phase} {done} {total}\n")


def read_steps(path: Path) -> list[tuple[str, int, int]]:
    """The steps `process_files` wrote to its progress file so far, in order."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append((parts[0], int(parts[1]), int(parts[2])))
    return out
