"""RTSTRUCT job on the real stack: the seeded phantom study, from each archive holding it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.core.errors import JobError
from gateway.core.settings import Settings
from gateway.devstack.seed import GroundTruth, RtStructTruth
from gateway.jobs.specs import RtStructSpec
from gateway.runtime import Runtime
from workers.jobs import rtstruct
from workers.jobs.base import RecordingHandle

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def runtime(settings: Settings, truth: GroundTruth) -> AsyncIterator[Runtime]:
    rt = await Runtime.create(settings)
    try:
        yield rt
    finally:
        await rt.aclose()


@pytest.fixture(scope="module")
def phantom(truth: GroundTruth) -> RtStructTruth:
    [rt] = truth.rtstructs
    return rt


def _file(settings: Settings, url: str) -> Path:
    assert url.startswith("/files/")
    return settings.results_dir / url.removeprefix("/files/")


@pytest.mark.parametrize("source", ["orthanc", "dcm4chee"])
async def test_job_measures_the_phantom(
    runtime: Runtime, phantom: RtStructTruth, source: str
) -> None:
    assert source in phantom.sources
    handle = RecordingHandle(f"rt-{source}")
    inp = {
        "source": source,
        "studyInstanceUid": phantom.study_uid,
        "seriesInstanceUid": phantom.rtstruct_series_uid,
    }
    result = await rtstruct.run(handle, runtime, RtStructSpec.parse(inp, runtime.settings))
    phases = [phase for _, phase, _ in handle.events]
    for phase in ("fetch", "parse", "masks", "metrics", "exports", "record"):
        assert phase in phases
    # each ROI's steps reported from the pool process as they end, up to every ROI
    every = f"{len(phantom.rois)} of {len(phantom.rois)} ROIs"
    for phase in ("masks", "metrics", "exports"):
        assert (phase, every) in [(p, m) for _, p, m in handle.events], phase
    assert result["seriesInstanceUid"] == phantom.rtstruct_series_uid
    assert result["referencedSeriesInstanceUid"] == phantom.ct_series_uid
    assert result["warnings"] == [] and "structureSets" not in result
    assert [r["name"] for r in result["rois"]] == [r.name for r in phantom.rois]
    for roi, truth in zip(result["rois"], phantom.rois, strict=True):
        assert roi["volumeCc"] == pytest.approx(truth.volume_cm3, rel=0.01)
        assert roi["surfaceCm2"] == pytest.approx(truth.surface_cm2, rel=0.03)
        assert roi["centroidMm"] == pytest.approx(truth.center_mm, abs=0.3)
        assert roi["sliceCount"] == truth.contours
        for key in ("maskUrl", "meshUrl"):
            assert roi[key].startswith(f"/files/rtstruct/{handle.id}/")
            assert _file(runtime.settings, roi[key]).stat().st_size > 0
    summary = json.loads(_file(runtime.settings, result["summaryUrl"]).read_text())
    assert [r["volumeCc"] for r in summary["rois"]] == [r["volumeCc"] for r in result["rois"]]
    files = sorted(
        p.name for p in (runtime.settings.results_dir / "rtstruct" / handle.id).iterdir()
    )
    again = await rtstruct.run(
        RecordingHandle(handle.id), runtime, RtStructSpec.parse(inp, runtime.settings)
    )
    assert again["rois"] == result["rois"]
    assert (
        sorted(p.name for p in (runtime.settings.results_dir / "rtstruct" / handle.id).iterdir())
        == files
    )


async def test_every_rtstruct_of_the_study(runtime: Runtime, phantom: RtStructTruth) -> None:
    inp = {"source": "orthanc", "studyInstanceUid": phantom.study_uid}
    result = await rtstruct.run(
        RecordingHandle("rt-all"), runtime, RtStructSpec.parse(inp, runtime.settings)
    )
    assert [s["seriesInstanceUid"] for s in result["structureSets"]] == [
        phantom.rtstruct_series_uid
    ]
    assert result["rois"] == result["structureSets"][0]["rois"]


async def test_unknown_series_is_a_job_error(runtime: Runtime, phantom: RtStructTruth) -> None:
    inp = {"source": "orthanc", "studyInstanceUid": phantom.study_uid, "seriesInstanceUid": "1.2.3"}
    with pytest.raises(JobError, match="no such RTSTRUCT series"):
        await rtstruct.run(
            RecordingHandle("rt-missing"), runtime, RtStructSpec.parse(inp, runtime.settings)
        )


async def test_discover(runtime: Runtime, phantom: RtStructTruth) -> None:
    found = await rtstruct.discover(runtime, "orthanc", set())
    assert RtStructSpec("orthanc", phantom.study_uid, phantom.rtstruct_series_uid) in found
    assert await rtstruct.discover(runtime, "orthanc", {phantom.rtstruct_series_uid}) == [
        f for f in found if f.series_uid != phantom.rtstruct_series_uid
    ]
