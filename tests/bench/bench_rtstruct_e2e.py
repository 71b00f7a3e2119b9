"""RT-STRUCT as a user waits (issue 16): `processRtStruct` to SUCCEEDED through the gateway.

    .venv/bin/python -m tests.bench.bench_rtstruct_e2e [--repeat 5] [--cases ct120,body98]

Starts a LocalStack (Orthanc only is used), stores two synthetic cases into "orthanc":

- ct120: a CT of 120 slices of 512 x 512 (0.9766 x 0.9766 x 2.5 mm, 63 MB) with 7 ROIs:
  spheres of 10 to 60 mm radius, a shell (r 45 with an r 25 hole) and a box;
- body98: a CT of 98 slices of 512 x 512 (0.9766 x 0.9766 x 3 mm) with 10 ROIs: a body
  contour (an elliptic cylinder of 400 x 260 mm over every slice, most of the CT), eight
  spheres and a box;

then starts a real `pacs-gateway serve` and `pacs-gateway worker` (open mode) and, same
run, alternating per case, times:

- ours: the `processRtStruct` mutation over HTTP until `job(id)` says SUCCEEDED (polled
  every 10 ms), after one warm-up job; the job's phases from its events;
- plain: the library path on the same files from disk (rt-utils full masks, a full-size
  NIfTI per ROI, VTK marching cubes + STL, JSON: `bench_rtstruct.plain`), without the
  fetch that ours includes.

Reports medians (min-max) and the ratio plain/ours. Not a pytest test; asserts no time.
Phases are the times between the job's events: since the parse overlaps the download,
"fetch" runs to the download's end and "parse" from there to the first ROI's mask (the
last images read, the stack, the check, the first ROI's mask and surface, and up to 0.1 s
of the job's polling of the pool's progress).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydicom.dataset import Dataset

from gateway.core.settings import load_settings
from gateway.devstack.stack import LocalStack
from tests.bench.bench_rtstruct import plain
from tests.jobs_support import GatewayProcess, WorkerProcess, drop_database, store_files
from tests.unit.test_rtstruct_builders import ContourSpec, box, ct_series, frame, rtstruct, sphere

DATABASE = "pacs_gw_bench_rtstruct"
SPACING = (0.9766, 0.9766)
MUTATION = "mutation($i: RtStructInput!) { processRtStruct(input: $i) { id } }"
JOB = "query($id: ID!) { job(id: $id) { status error result events { at phase message } } }"


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def body(ct: Sequence[Dataset], half_axes: tuple[float, float]) -> list[ContourSpec]:
    """An elliptic cylinder along the normal, on every slice."""
    r, c, n = frame(ct)
    m = 720
    t = 2 * math.pi * np.arange(m) / m
    out = []
    for ds in ct:
        p = np.array(ds.ImagePositionPatient, float)
        centre = float(p @ n) * n
        ring = np.multiply.outer(half_axes[0] * np.cos(t), r)
        ring += np.multiply.outer(half_axes[1] * np.sin(t), c)
        out.append(("CLOSED_PLANAR", centre + ring))
    return out


def case(name: str) -> tuple[list[Dataset], Dataset]:
    """The CT slices and the structure set of one case."""
    if name == "ct120":
        offsets = [(k - 59.5) * 2.5 for k in range(120)]
        ct = ct_series(512, 512, SPACING, offsets, hu=lambda w: 40.0 * np.ones(w.shape[:2]))
        spheres = [
            ((-120.0, -100.0, 0.0), 10.0),
            ((-60.0, 80.0, 20.0), 20.0),
            ((100.0, -80.0, -30.0), 30.0),
            ((0.0, 0.0, 0.0), 60.0),
            ((150.0, 100.0, 40.0), 40.0),
        ]
        rois = [(f"Sphere{i}", sphere(ct, c, rad, step=1.5)) for i, (c, rad) in enumerate(spheres)]
        shell = sphere(ct, (-150.0, 120.0, -60.0), 45.0, 1.5)
        shell += sphere(ct, (-150.0, 120.0, -60.0), 25.0, 1.5)
        rois += [("Shell", shell), ("Box", box(ct, (120.0, 150.0, -60.0), (50.0, 40.0, 45.0)))]
    elif name == "body98":
        offsets = [(k - 48.5) * 3.0 for k in range(98)]

        def hu(w: np.ndarray) -> np.ndarray:
            inside = (w[..., 0] / 200.0) ** 2 + (w[..., 1] / 130.0) ** 2 <= 1.0
            return np.where(inside, 40.0, -1000.0)

        ct = ct_series(512, 512, SPACING, offsets, hu=hu)
        spheres = [
            ((-80.0, -60.0, 0.0), 30.0),
            ((70.0, -50.0, 10.0), 25.0),
            ((0.0, 60.0, -20.0), 40.0),
            ((-90.0, 70.0, 30.0), 20.0),
            ((90.0, 80.0, -40.0), 15.0),
            ((0.0, -90.0, 50.0), 35.0),
            ((-40.0, 0.0, -60.0), 22.0),
            ((60.0, 10.0, 60.0), 28.0),
        ]
        rois = [("Body", body(ct, (200.0, 130.0)))]
        rois += [(f"Sphere{i}", sphere(ct, c, rad, step=1.5)) for i, (c, rad) in enumerate(spheres)]
        rois += [("Box", box(ct, (0.0, 0.0, 0.0), (60.0, 40.0, 48.0)))]
    else:
        raise SystemExit(f"unknown case {name!r}")
    return ct, rtstruct(ct, rois)


def part10(ds: Dataset) -> bytes:
    """A dataset as a Part 10 file."""
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write(ct: list[Dataset], rs: Dataset, directory: Path) -> tuple[Path, Path]:
    """The case's files on disk for the plain path: (structure set, CT directory)."""
    ct_dir = directory / "ct"
    ct_dir.mkdir(parents=True)
    for ds in ct:
        ds.save_as(ct_dir / f"{ds.InstanceNumber:04d}.dcm", enforce_file_format=True)
    path = directory / "rtstruct.dcm"
    rs.save_as(path, enforce_file_format=True)
    return path, ct_dir


def run_job(http: httpx.Client, origin: str, study: str, series: str) -> dict[str, Any]:
    """Mutation to SUCCEEDED: seconds, the job's processingSeconds and its phase times."""
    start = time.perf_counter()
    answer = http.post(
        origin + "/graphql",
        json={
            "query": MUTATION,
            "variables": {
                "i": {"source": "orthanc", "studyInstanceUid": study, "seriesInstanceUid": series}
            },
        },
    ).json()
    job_id = answer["data"]["processRtStruct"]["id"]
    while True:
        job = http.post(
            origin + "/graphql", json={"query": JOB, "variables": {"id": job_id}}
        ).json()["data"]["job"]
        if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    if job["status"] != "SUCCEEDED":
        raise SystemExit(f"job {job_id} ended {job['status']}: {job['error']}")
    return {
        "seconds": seconds,
        "processing": job["result"]["processingSeconds"],
        "phases": phases(job["events"]),
        "rois": len(job["result"]["rois"]),
    }


def phases(events: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds from each event to the next, by the phase it opened (queue: to the first)."""
    at = [datetime.fromisoformat(e["at"]) for e in events]
    out: dict[str, float] = {}
    for i in range(len(events) - 1):
        name = events[i]["phase"] or "queued"
        out[name] = out.get(name, 0.0) + (at[i + 1] - at[i]).total_seconds()
    return out


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cases", default="ct120,body98")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="pacs-bench-rtstruct-", dir="/dev/shm"))
    stack = LocalStack(workdir=root / "stack", database_name=DATABASE)
    names = args.cases.split(",")
    try:
        info = stack.start()
        config = root / "gateway.toml"
        config.write_text(
            info.gateway_toml(
                results_dir=str(root / "results"), sync_interval_s=0, auth_mode="open"
            )
        )
        env = {"DATABASE_URL": info.database_url, "REDIS_URL": info.redis_url}
        settings = load_settings(config, env=env)
        cases: dict[str, tuple[str, str, Path, Path]] = {}
        for name in names:
            ct, rs = case(name)
            files = [part10(ds) for ds in [*ct, rs]]
            asyncio.run(store_files(settings, "orthanc", files))
            rs_path, ct_dir = write(ct, rs, root / name)
            cases[name] = (str(rs.StudyInstanceUID), str(rs.SeriesInstanceUID), rs_path, ct_dir)
            log(f"{name}: {len(ct)} slices, {sum(map(len, files)) / 1e6:.0f} MB stored")
        gateway = GatewayProcess(config, env, root / "gateway.log").start()
        worker = WorkerProcess(config, env, root / "worker.log").start()
        ours: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        plains: dict[str, list[float]] = {n: [] for n in names}
        loads = [os.getloadavg()]
        try:
            origin = f"http://127.0.0.1:{gateway.port}"
            with httpx.Client(timeout=120) as http:
                time.sleep(3)  # the worker's start-up
                for name in names:  # warm-up: imports, the worker's pools
                    run_job(http, origin, *cases[name][:2])
                for i in range(args.repeat):
                    for name in names:
                        study, series, rs_path, ct_dir = cases[name]
                        ours[name].append(run_job(http, origin, study, series))
                        out = root / f"plain-{name}-{i}"
                        out.mkdir()
                        start = time.perf_counter()
                        plain(rs_path, ct_dir, out)
                        plains[name].append(time.perf_counter() - start)
                        log(
                            name,
                            i,
                            f"ours {ours[name][-1]['seconds']:.3f}s",
                            f"plain {plains[name][-1]:.3f}s",
                        )
        finally:
            loads.append(os.getloadavg())
            worker.stop()
            gateway.stop()
        report(names, ours, plains, loads)
    finally:
        url = stack.info.database_url if stack.info else None
        stack.stop()
        drop_database(url, prefix=DATABASE)
        shutil.rmtree(root, ignore_errors=True)


def report(
    names: list[str],
    ours: dict[str, list[dict[str, Any]]],
    plains: dict[str, list[float]],
    loads: list[tuple[float, float, float]],
) -> None:
    print(
        f"Date: {datetime.now():%Y-%m-%d %H:%M}; load averages (1 min) "
        f"{', '.join(f'{la[0]:.1f}' for la in loads)}\n"
    )
    print(
        "| case | ours: mutation to SUCCEEDED, s | job's processingSeconds | plain, s | "
        "plain / ours | goal |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name in names:
        seconds = [r["seconds"] for r in ours[name]]
        ratio = statistics.median(plains[name]) / statistics.median(seconds)
        met = "met" if statistics.median(seconds) < 1.0 and ratio >= 8 else "**missed**"
        print(
            f"| {name} ({ours[name][0]['rois']} ROIs) | {med(seconds)} | "
            f"{med([r['processing'] for r in ours[name]])} | {med(plains[name])} | "
            f"**{ratio:.1f}x** | < 1.0 s and >= 8x: {met} |"
        )
    print("\nPhases (median seconds, from the job's events):\n")
    for name in names:
        keys = list(ours[name][0]["phases"])
        parts = [
            f"{k} {statistics.median(r['phases'].get(k, 0.0) for r in ours[name]):.3f}"
            for k in keys
        ]
        print(f"- {name}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
