"""RT-STRUCT pipeline against the plain library path, same data, same run.

    .venv/bin/python -m tests.bench.bench_rtstruct [--repeat 3] [--threads 2]

Writes a synthetic 512×512×100 CT (0.98 mm pixels, 3 mm slices) and an RT
Structure Set of 10 ROIs (spheres and boxes of known size) to a temporary
directory, then times, alternating, from the files on disk to every export written:

- ours: `workers.dicom.rtstruct.process_files` (bounding-box masks, field
  iso-surface, NIfTI + STL per ROI, JSON summary);
- plain: rt-utils `RTStructBuilder.create_from` + `get_roi_mask_by_name` (full-size
  masks), a full-size SimpleITK NIfTI per ROI, VTK marching cubes on the binary
  mask + STL, and a JSON summary.

Reports medians, the ratio, and each path's surface error on the spheres. Not a pytest test.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from rt_utils import RTStructBuilder
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkFiltersCore import vtkMarchingCubes, vtkMassProperties
from vtkmodules.vtkIOGeometry import vtkSTLWriter

from tests.unit.test_rtstruct_builders import box, ct_series, rtstruct, sphere
from workers.dicom.rtstruct import process_files

SPHERES = [((-80.0, -60.0, 0.0), 30.0), ((70.0, -50.0, 10.0), 25.0), ((0.0, 60.0, -20.0), 40.0),
           ((-90.0, 70.0, 30.0), 20.0), ((90.0, 80.0, -40.0), 15.0), ((0.0, -90.0, 50.0), 35.0),
           ((-40.0, 0.0, -60.0), 22.0), ((60.0, 10.0, 60.0), 28.0)]  # fmt: skip
BOXES = [((0.0, 0.0, 0.0), (60.0, 40.0, 48.0)), ((-120.0, -120.0, -30.0), (30.0, 30.0, 60.0))]


def write_case(directory: Path) -> tuple[Path, list[Path], list[tuple[str, float, float]]]:
    """The CT and RTSTRUCT files; (name, true volume mm³, true surface mm²) per ROI."""
    offsets = [(k - 49.5) * 3.0 for k in range(100)]
    ct = ct_series(rows=512, columns=512, spacing=(0.98, 0.98), offsets=offsets,
                   hu=lambda w: 40.0 * np.ones(w.shape[:2]))  # fmt: skip
    rois: list[tuple[str, Any]] = []
    truth = []
    for n, (c, r) in enumerate(SPHERES):
        rois.append((f"Sphere{n}", sphere(ct, c, r, step=1.5)))
        truth.append((f"Sphere{n}", 4 / 3 * math.pi * r**3, 4 * math.pi * r**2))
    for n, (c, s) in enumerate(BOXES):
        rois.append((f"Box{n}", box(ct, c, s)))
        truth.append((f"Box{n}", s[0] * s[1] * s[2], 2 * (s[0] * s[1] + s[0] * s[2] + s[1] * s[2])))
    ct_dir = directory / "ct"
    ct_dir.mkdir()
    paths = []
    for ds in ct:
        path = ct_dir / f"{ds.InstanceNumber:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    rs = directory / "rtstruct.dcm"
    rtstruct(ct, rois).save_as(rs, enforce_file_format=True)
    return rs, paths, truth


def ours(rs: Path, cts: list[Path], out: Path, threads: int, crop: bool) -> dict[str, float]:
    """Our pipeline; surface (mm²) per ROI name."""
    result = process_files(rs, cts, out, threads=threads, crop=crop)
    return {r["name"]: r["surfaceCm2"] * 100 for r in result["rois"]}


def plain(rs: Path, ct_dir: Path, out: Path) -> dict[str, float]:
    """The plain library path; surface (mm²) per ROI name."""
    rt = RTStructBuilder.create_from(dicom_series_path=str(ct_dir), rt_struct_path=str(rs))
    first = rt.series_data[0]
    spacing = [float(v) for v in first.PixelSpacing] + [3.0]
    origin = [float(v) for v in first.ImagePositionPatient]
    areas, summary = {}, []
    for name in rt.get_roi_names():
        mask = rt.get_roi_mask_by_name(name)  # (rows, columns, slices), full size
        volume = np.ascontiguousarray(mask.transpose(2, 0, 1).astype(np.uint8))
        image = sitk.GetImageFromArray(volume)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        sitk.WriteImage(image, str(out / f"{name}.nii.gz"), True)
        vtk_image = vtkImageData()
        vtk_image.SetDimensions(volume.shape[2], volume.shape[1], volume.shape[0])
        vtk_image.SetSpacing(spacing)
        vtk_image.SetOrigin(origin)
        vtk_image.GetPointData().SetScalars(numpy_to_vtk(volume.ravel(), deep=True))
        mc = vtkMarchingCubes()
        mc.SetInputData(vtk_image)
        mc.SetValue(0, 0.5)
        mc.Update()
        writer = vtkSTLWriter()
        writer.SetFileName(str(out / f"{name}.stl"))
        writer.SetInputData(mc.GetOutput())
        writer.Write()
        mp = vtkMassProperties()
        mp.SetInputData(mc.GetOutput())
        mp.Update()
        areas[name] = mp.GetSurfaceArea()
        summary.append({"name": name, "voxels": int(volume.sum()), "surface": areas[name]})
    (out / "summary.json").write_text(json.dumps(summary))
    return areas


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rs, cts, truth = write_case(root)
        paths = ("ours", "ours-crop", "plain")
        times: dict[str, list[float]] = {p: [] for p in paths}
        areas: dict[str, dict[str, float]] = {}
        for i in range(args.repeat):
            for name in paths:
                out = root / f"{name}{i}"
                out.mkdir()
                start = time.perf_counter()
                if name.startswith("ours"):
                    areas[name] = ours(rs, cts, out, args.threads, name == "ours-crop")
                else:
                    areas[name] = plain(rs, cts[0].parent, out)
                times[name].append(time.perf_counter() - start)
        med = {p: statistics.median(times[p]) for p in paths}
        print("| path | median (s) | runs (s) | worst sphere surface error | worst box error |")
        print("|---|---:|---|---:|---:|")
        for name, t in med.items():
            errs = {n: areas[name][n] / a - 1 for n, _, a in truth}
            sph = max((e for n, e in errs.items() if n.startswith("Sphere")), key=abs)
            bx = max((e for n, e in errs.items() if n.startswith("Box")), key=abs)
            runs = ", ".join(f"{v:.2f}" for v in times[name])
            print(f"| {name} | {t:.3f} | {runs} | {sph:+.1%} | {bx:+.1%} |")
        full, crop = med["plain"] / med["ours"], med["plain"] / med["ours-crop"]
        print(
            f"\nratio plain/ours: {full:.1f}x (full-grid NIfTI), {crop:.1f}x (bounding-box NIfTI)"
        )


if __name__ == "__main__":
    main()
