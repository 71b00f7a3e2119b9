"""The RT-STRUCT job: fetch a structure set and its image series, measure, export, record.

Input: `gateway.jobs.specs.RtStructSpec` (contract `RtStructInput`).
Without a series UID every RTSTRUCT series of the study is processed: the result
then holds "structureSets" (one entry each) and its top-level fields are the
first entry's. Files go to `<results_dir>/rtstruct/<job id>/` (one sub-directory
per structure set after the first), served as `/files/rtstruct/<job id>/...`.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pydicom

from gateway.core.errors import JobError
from gateway.jobs.specs import RtStructSpec
from gateway.runtime import Runtime
from gateway.sources.base import InstanceQuery, PacsSource, SeriesQuery, StudyQuery
from workers.dicom import rtstruct as engine  # its pipeline loads on first use
from workers.dicom.rtstruct import RtStructError, full_grid_name, parse_structure_set
from workers.jobs.base import JobHandle

KIND = "rtstruct"
URL_ROOT = "/files/rtstruct"
PHASES = ("parse", "masks", "metrics", "exports")
STEP_POLL_S = 0.1  # how often the pipeline's progress is read while it runs


Arrived = Callable[[int], Awaitable[None]]  # told the number of images written so far


async def _download(
    source: PacsSource, study: str, series: str, target: Path, arrived: Arrived | None = None
) -> list[Path]:
    """The series' instances as `00000.dcm`, `00001.dcm`, ... in `target`, each written
    whole, for `engine.read_arriving` to read while the download goes on; however the
    download ends (error, cancellation), the marker saying how many were written last."""
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    paths: list[Path] = []
    complete = False
    try:
        async for data in source.retrieve_study(study, [series]):
            path = target / engine.image_name(len(paths))
            await asyncio.to_thread(engine.write_whole, path, data)
            paths.append(path)
            if arrived is not None:
                await arrived(len(paths))
        complete = True
    finally:  # not awaited: a cancelled task must still leave the reader its end
        marker = engine.marker_text(len(paths), complete).encode()
        engine.write_whole(target / engine.MARKER, marker)
    return paths


def _references(path: Path) -> tuple[tuple[str, ...], int]:
    ss = parse_structure_set(pydicom.dcmread(path))
    return ss.referenced_series_uids, len(ss.referenced_image_uids)


async def _fetch_one(
    source: PacsSource, study: str, rt_series: str, work: Path
) -> tuple[Path, str, int, list[str]]:
    """The structure set file, the image series it references and how many images the
    source holds there, and warnings about what was left aside (further instances or
    referenced series)."""
    rt_files = await _download(source, study, rt_series, work / "rtstruct")
    if not rt_files:
        raise JobError("the RTSTRUCT series has no instances in the source")
    try:
        referenced, image_count = await asyncio.to_thread(_references, rt_files[0])
    except (RtStructError, pydicom.errors.InvalidDicomError) as exc:
        raise JobError(f"the RTSTRUCT instance cannot be read ({type(exc).__name__})") from exc
    if not referenced:
        raise JobError("the structure set references no image series")
    ref = referenced[0]
    notes = []
    if len(rt_files) > 1:
        notes.append(f"the RTSTRUCT series holds {len(rt_files)} instances: the first was used")
    if len(referenced) > 1:
        notes.append(f"{len(referenced)} image series referenced: the first was used")
    held = await source.find_instances(InstanceQuery(study_uid=study, series_uids=(ref,)))
    if not held:
        raise JobError("the image series the structure set references is not in the source")
    if len(held) < image_count:
        raise JobError(
            f"the referenced image series is incomplete in the source: {len(held)} of "
            f"{image_count} images"
        )
    return rt_files[0], ref, len(held), notes


def _fetch_progress(job: JobHandle, expected: int, n: int, share: float) -> Arrived:
    """Fetch progress as images arrive: at most one event per STEP_POLL_S, and the last."""
    last = [time.monotonic()]

    async def arrived(count: int) -> None:
        now = time.monotonic()
        if now - last[0] >= STEP_POLL_S or count == expected:
            last[0] = now
            at = (n + 0.4 * min(1.0, count / max(1, expected))) * share
            await job.progress(at, "fetch", f"{count} of {expected} images")

    return arrived


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Read a pool call's exception, so that one the job no longer awaits is not logged."""
    if not future.cancelled():
        future.exception()


async def run(job: JobHandle, runtime: Runtime, spec: RtStructSpec) -> dict[str, Any]:
    """Process the requested structure set(s); the result dict is the job's result."""
    start = time.perf_counter()
    source = runtime.sources[spec.source]
    study = spec.study_uid
    wanted = spec.series_uid
    await job.progress(0.0, "fetch", "looking for RTSTRUCT series")
    series = await source.find_series(SeriesQuery(study_uids=(study,), modality="RTSTRUCT"))
    rt_uids = [s.series_uid for s in series if s.modality in (None, "RTSTRUCT")]
    if wanted:
        rt_uids = [u for u in rt_uids if u == wanted.strip()]
    if not rt_uids:
        raise JobError("no such RTSTRUCT series in the study on this source")
    base = runtime.settings.results_dir / KIND / job.id
    # the original files never go under results_dir, which /files serves
    work = Path(tempfile.gettempdir()) / "pacs-gateway-work" / job.id
    for stale in (base, work):  # idempotent: a re-run starts clean
        await asyncio.to_thread(shutil.rmtree, stale, True)
    sets = []
    try:
        for n, rt_uid in enumerate(rt_uids):
            share = 1 / len(rt_uids)
            await job.progress(n * share, "fetch", f"structure set {n + 1} of {len(rt_uids)}")
            rt_file, ref, expected, notes = await _fetch_one(source, study, rt_uid, work / str(n))
            folder = work / str(n) / "images"
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            out = base if n == 0 else base / f"set{n + 1}"
            crop = not spec.full_grid_masks  # bounding-box masks unless asked otherwise
            steps = work / f"{n}.progress"
            # the pool process reads and decodes each image as the download writes it
            call = functools.partial(
                engine.process_arriving,
                rt_file,
                folder,
                out,
                threads=2,
                crop=crop,
                progress_file=steps,
                expected=expected,
            )
            pending = asyncio.get_running_loop().run_in_executor(runtime.cpu_pool(), call)
            pending.add_done_callback(_retrieved)
            arrived = _fetch_progress(job, expected, n, share)
            images = await _download(source, study, ref, folder, arrived)
            await job.checkpoint()
            await job.progress((n + 0.4) * share, "parse", f"{len(images)} images")
            try:
                outcome = await _following(job, pending, steps, n, share)
            except RtStructError as exc:
                raise JobError(str(exc)) from exc
            outcome["warnings"] = [*notes, *outcome["warnings"]]
            sets.append(_result(job.id, out.relative_to(base), outcome))
            await job.checkpoint()
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    await job.progress(1.0, "record", f"{sum(len(s['rois']) for s in sets)} ROIs")
    result = dict(sets[0])
    result["processingSeconds"] = round(time.perf_counter() - start, 3)
    if len(sets) > 1 or not wanted:
        result["structureSets"] = sets
    return result


async def _following(
    job: JobHandle,
    pending: asyncio.Future[dict[str, Any]],
    steps_file: Path,
    n: int,
    share: float,
) -> dict[str, Any]:
    """The pipeline's outcome; meanwhile, each ROI's mask, measures and exports as job
    progress (read from the progress file the pool process appends to)."""
    reported = 0
    while True:
        done, _ = await asyncio.wait({pending}, timeout=STEP_POLL_S)
        steps = await asyncio.to_thread(engine.read_steps, steps_file)
        latest = {phase: (count, total) for phase, count, total in steps[reported:]}
        reported = len(steps)
        for phase, (count, total) in latest.items():  # the newest step of each phase
            at = n + 0.4 + 0.15 * (PHASES.index(phase) - 1 + count / max(1, total))
            await job.progress(at * share, phase, f"{count} of {total} ROIs")
        if done:
            return pending.result()


def _url(job_id: str, sub: Path, name: str | None) -> str | None:
    if name is None:
        return None
    return f"{URL_ROOT}/{job_id}/{(sub / name).as_posix()}"


def _result(job_id: str, sub: Path, outcome: dict[str, Any]) -> dict[str, Any]:
    rois = []
    for roi in outcome["rois"]:
        entry = {k: v for k, v in roi.items() if k not in ("maskFile", "meshFile")}
        entry["maskUrl"] = _url(job_id, sub, roi["maskFile"])
        full = roi["maskFile"] and outcome.get("gridFile") and full_grid_name(roi["maskFile"])
        entry["fullGridMaskUrl"] = _url(job_id, sub, full or roi["maskFile"])
        entry["meshUrl"] = _url(job_id, sub, roi["meshFile"])
        rois.append(entry)
    return {
        "studyInstanceUid": outcome["studyInstanceUid"],
        "seriesInstanceUid": outcome["seriesInstanceUid"],
        "referencedSeriesInstanceUid": outcome["referencedSeriesInstanceUid"],
        "rois": rois,
        "warnings": outcome["warnings"],
        "processingSeconds": outcome["timings"].get("total", 0.0),
        "summaryUrl": _url(job_id, sub, outcome["summaryFile"]),
    }


async def discover(runtime: Runtime, source_id: str, seen: set[str]) -> list[RtStructSpec]:
    """Specs for the source's RTSTRUCT series not in `seen` (two queries)."""
    source = runtime.sources[source_id]
    studies = await source.find_studies(StudyQuery(modality="RTSTRUCT"))
    if not studies:
        return []
    series = await source.find_series(
        SeriesQuery(study_uids=tuple(s.study_uid for s in studies), modality="RTSTRUCT")
    )
    return [
        RtStructSpec(source=source_id, study_uid=s.study_uid, series_uid=s.series_uid)
        for s in series
        if s.series_uid not in seen and s.modality in (None, "RTSTRUCT")
    ]
