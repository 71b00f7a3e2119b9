"""One structure set from datasets (or files) to measures and exports.

Checks the image series against the RT Structure Set's references (PS3.3
C.8.8.5: Referenced Frame of Reference, RT Referenced Series and Contour Image
Sequences), then per ROI: mask in its bounding box, iso-surface, measures and
exports. ROIs run on a few threads (NumPy, VTK and ITK release the GIL in their
heavy loops); this function is meant to run in a worker process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from workers.dicom.rtstruct import export
from workers.dicom.rtstruct.grid import ImageStack, build_stack
from workers.dicom.rtstruct.metrics import roi_metrics
from workers.dicom.rtstruct.model import RoiDef, RoiResult, RtStructError, StructureSet
from workers.dicom.rtstruct.parse import parse_structure_set
from workers.dicom.rtstruct.raster import rasterize
from workers.dicom.rtstruct.surface import iso_surface, smoothed


@dataclass(slots=True)
class Outcome:
    """The measures of a structure set, the files written and per-phase timings (s)."""

    structure_set: StructureSet
    referenced_series_uid: str
    rois: list[RoiResult]
    warnings: list[str]
    timings: dict[str, float]
    summary_file: str | None

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


def _one_roi(
    roi: RoiDef, stack: ImageStack, out: Path | None, crop: bool
) -> tuple[RoiResult, dict[str, float]]:
    t0 = time.perf_counter()
    raster = rasterize(roi, stack.grid)
    t1 = time.perf_counter()
    surface = iso_surface(raster, stack.grid)
    result = roi_metrics(roi, raster, stack, surface)
    t2 = time.perf_counter()
    if out is not None and not raster.empty:
        stem = export.safe_name(roi.number, roi.name)
        result.mask_file = export.write_nifti(out / f"{stem}.nii.gz", raster, stack.grid, crop).name
        result.mesh_file = export.write_stl(out / f"{stem}.stl", smoothed(surface.mesh)).name
    t3 = time.perf_counter()
    return result, {"masks": t1 - t0, "metrics": t2 - t1, "exports": t3 - t2}


def process(
    rtstruct: Dataset,
    images: Sequence[Dataset],
    out_dir: Path | None = None,
    threads: int = 2,
    summary_name: str = "summary.json",
    crop: bool = False,
) -> Outcome:
    """Measure (and export, when `out_dir` is given) every ROI of one structure set.

    NIfTI masks cover the whole image grid, or only each ROI's bounding box when `crop`.
    """
    start = time.perf_counter()
    ss = parse_structure_set(rtstruct)
    series_uid = check_images(ss, images)
    stack = build_stack(images)
    timings = {"parse": time.perf_counter() - start, "masks": 0.0, "metrics": 0.0, "exports": 0.0}
    warnings: list[str] = []
    if not stack.grid.uniform:
        warnings.append("non-uniform slice spacing: NIfTI masks resampled to the smallest gap")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        done = list(pool.map(lambda roi: _one_roi(roi, stack, out_dir, crop), ss.rois))
    rois = [r for r, _ in done]
    for _, t in done:  # CPU time summed over threads
        for key, value in t.items():
            timings[key] += value
    for r in rois:
        warnings.extend(r.warnings)
    timings["total"] = time.perf_counter() - start
    outcome = Outcome(
        ss, series_uid, rois, warnings, {k: round(v, 4) for k, v in timings.items()}, None
    )
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
) -> dict[str, Any]:
    """`process` on files; returns the JSON form (a picklable entry point for process pools)."""
    try:
        rtstruct = pydicom.dcmread(rtstruct_path)
        images = [pydicom.dcmread(p) for p in image_paths]
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise RtStructError(f"unreadable DICOM file ({type(exc).__name__})") from exc
    target = Path(out_dir) if out_dir is not None else None
    return process(rtstruct, images, target, threads, summary_name, crop).as_json()
