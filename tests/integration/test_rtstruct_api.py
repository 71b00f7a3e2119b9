"""RT-STRUCT via the API: mutation, worker, rtStructResults, files over HTTP; auto-detection."""

from __future__ import annotations

import asyncio

import pytest

from gateway.devstack.seed import GroundTruth, build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.jobs.specs import RtStructSpec
from gateway.runtime import Runtime
from tests.conftest import JobEnv
from tests.jobs_support import JOB_FIELDS, gql, gql_data, wait_job
from workers.jobs import rtstruct
from workers.settings import watch_rtstructs

PROCESS = (
    f"mutation($input: RtStructInput!) {{ processRtStruct(input: $input) {{ {JOB_FIELDS} }} }}"
)
RESULTS = """query($uid: String!) {
  rtStructResults(studyInstanceUid: $uid) {
    jobId studyInstanceUid seriesInstanceUid referencedSeriesInstanceUid processingSeconds
    summaryUrl warnings
    rois { number name volumeCc surfaceCm2 centroidMm sliceCount maskUrl meshUrl fullGridMaskUrl }
  }
}"""


@pytest.fixture(scope="module")
def seeded(job_env: JobEnv) -> tuple[JobEnv, GroundTruth]:
    """The module's stack with the demo data, and its truth."""
    asyncio.run(seed_archives(job_env.settings, 42, 20, None))
    ids = job_env.settings.ids_with_role("store")
    return job_env, build_demo(seed=42, patients=20, sources=ids).truth


def test_process_through_the_api_and_download_files(seeded: tuple[JobEnv, GroundTruth]) -> None:
    env, truth = seeded
    [phantom] = truth.rtstructs
    body = {"source": phantom.sources[0], "studyInstanceUid": phantom.study_uid}
    worker = env.worker("rt-worker").start()
    try:
        with env.client() as client:
            job = gql_data(client, PROCESS, input=body)["processRtStruct"]
            done = wait_job(client, job["id"], timeout=180)
            assert done["status"] == "SUCCEEDED", done
            [result] = gql_data(client, RESULTS, uid=phantom.study_uid)["rtStructResults"]
            assert result["jobId"] == job["id"]
            assert result["seriesInstanceUid"] == phantom.rtstruct_series_uid
            assert result["referencedSeriesInstanceUid"] == phantom.ct_series_uid
            expected = {r.name: r for r in phantom.rois}
            assert {r["name"] for r in result["rois"]} == set(expected)
            for roi in result["rois"]:
                truth_roi = expected[roi["name"]]
                assert roi["volumeCc"] == pytest.approx(truth_roi.volume_cm3, rel=0.05)
                for url in (roi["maskUrl"], roi["meshUrl"]):
                    got = client.get(url)
                    assert got.status_code == 200 and len(got.content) > 100
                # the full-grid mask is made on its first download, then served as a file
                full = roi["fullGridMaskUrl"]
                assert full.endswith(".full.nii.gz") and full != roi["maskUrl"]
                made = env.settings.results_dir / full.removeprefix("/files/")
                assert not made.exists()
                first, again = client.get(full), client.get(full)
                assert first.status_code == again.status_code == 200
                assert made.is_file() and first.content == again.content
            summary = client.get(result["summaryUrl"])
            assert summary.status_code == 200 and summary.json()
            # a client normalises the dots away (then the dashboard answers /gateway.toml);
            # either way the configuration file is not served
            outside = client.get("/files/../gateway.toml")
            assert outside.status_code in (200, 404) and "[[sources]]" not in outside.text
            escaped = client.get("/files/rtstruct/%2e%2e/%2e%2e/gateway.toml")
            assert escaped.status_code == 404 and "[[sources]]" not in escaped.text
            # only a bounding-box mask's twin is made: other names stay unknown
            missing = roi["maskUrl"].replace(".nii.gz", ".other.full.nii.gz")
            assert client.get(missing).status_code == 404
        served = env.settings.results_dir / "rtstruct" / job["id"]
        assert not list(served.rglob("*.dcm")), "no original DICOM file under /files"
    finally:
        worker.stop()


def test_refuses_unknown_source(seeded: tuple[JobEnv, GroundTruth]) -> None:
    env, _ = seeded
    with env.client() as client:
        answer = gql(client, PROCESS, input={"source": "nowhere", "studyInstanceUid": "1.2.3"})
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_new_structure_sets_are_detected_once(seeded: tuple[JobEnv, GroundTruth]) -> None:
    env, truth = seeded
    [phantom] = truth.rtstructs

    async def scenario() -> tuple[list[RtStructSpec], int, list[dict]]:
        runtime = await Runtime.create(env.settings, run_migrations=False)
        try:
            service = runtime.job_service()
            store = service.store
            found = await rtstruct.discover(runtime, phantom.sources[0], set())
            await runtime.redis.delete(runtime.keys.tick("rtstruct"))
            submitted = await watch_rtstructs(runtime, service)
            return found, submitted, [asked for _, asked, _ in await store.of_kind("RTSTRUCT")]
        finally:
            await runtime.aclose()

    found, submitted, asked = asyncio.run(scenario())
    assert [f.series_uid for f in found] == [phantom.rtstruct_series_uid]
    assert found[0].study_uid == phantom.study_uid
    assert phantom.study_uid in {a["studyInstanceUid"] for a in asked}, "processed before"
    assert submitted == 0, "a structure set already in a job is not submitted again"


def test_a_second_instance_in_the_series_is_named_in_the_warnings(
    seeded: tuple[JobEnv, GroundTruth],
) -> None:
    from io import BytesIO

    from pydicom import dcmread

    from workers.jobs.base import RecordingHandle

    env, truth = seeded
    [phantom] = truth.rtstructs

    async def scenario() -> dict:
        runtime = await Runtime.create(env.settings, run_migrations=False)
        try:
            source = runtime.sources[phantom.sources[0]]
            stream = source.retrieve_study(phantom.study_uid, [phantom.rtstruct_series_uid])
            [original] = [blob async for blob in stream]
            ds = dcmread(BytesIO(original))
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".2"
            out = BytesIO()
            ds.save_as(out, enforce_file_format=True)
            assert not (await source.store([out.getvalue()])).failed
            body = {
                "source": phantom.sources[0],
                "studyInstanceUid": phantom.study_uid,
                "seriesInstanceUid": phantom.rtstruct_series_uid,
            }
            return await rtstruct.run(
                RecordingHandle("rt-two-instances"),
                runtime,
                RtStructSpec.parse(body, runtime.settings),
            )
        finally:
            await runtime.aclose()

    result = asyncio.run(scenario())
    assert any("2 instances" in w for w in result["warnings"]), result["warnings"]
    assert {r["name"] for r in result["rois"]} == {r.name for r in phantom.rois}
