"""Faults seen through the GraphQL API, on a private seeded three-archive stack.

One archive stopped (a real server stopped), one hanging (a loopback socket
that accepts connections and never answers, configured as a fourth source),
and the overall query deadline. The query must answer within the failing
source's timeout plus 10 %, with that source's status ERROR or TIMEOUT and
the other archives' data complete.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import strawberry
from starlette.testclient import TestClient

from gateway.core.settings import Settings, SourceConfig, load_settings
from gateway.devstack.seed import GroundTruth, build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.devstack.stack import LocalStack
from gateway.server import app as app_module
from gateway.server.app import create_app
from resolvers.limits import DEADLINE_CODE, extensions
from resolvers.queries import Query

pytestmark = pytest.mark.integration

ARCHIVES = ["orthanc", "dcm4chee", "legacy"]
SEED, PATIENTS_N = 7, 8
STUCK_TIMEOUT_S = 5.0  # long enough that its 10% covers a noisy machine


@pytest.fixture(scope="module")
def hanging_port() -> Iterator[int]:
    """A loopback port whose listen backlog completes TCP handshakes; nothing ever answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        yield int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_settings(private_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    info = private_stack.info
    assert info is not None
    path = tmp_path_factory.mktemp("faults") / "gateway.toml"
    results = tmp_path_factory.mktemp("fault-results")
    path.write_text(
        info.gateway_toml(results_dir=str(results), sync_interval_s=0, auth_mode="open")
    )
    env = {"DATABASE_URL": info.database_url, "REDIS_URL": info.redis_url}
    return load_settings(path, env=env)


@pytest.fixture(scope="module")
def truth(base_settings: Settings) -> GroundTruth:
    ids = base_settings.ids_with_role("store")
    counts = asyncio.run(seed_archives(base_settings, SEED, PATIENTS_N, None))
    plan = build_demo(seed=SEED, patients=PATIENTS_N, sources=ids).truth
    assert counts == plan.instance_counts
    return plan


def with_stuck(settings: Settings, port: int, timeout_s: float = STUCK_TIMEOUT_S) -> Settings:
    stuck = SourceConfig(
        id="stuck",
        name="Hanging archive",
        kind="dicomweb",
        url=f"http://127.0.0.1:{port}/dicom-web",
        roles=("query",),
        timeout_s=timeout_s,
        connect_timeout_s=1.0,
        retries=2,  # the deadline covers the retries too
    )
    return replace(settings, sources=(*settings.sources, stuck))


@pytest.fixture
def client(base_settings: Settings, truth: GroundTruth) -> Iterator[TestClient]:
    """A fresh gateway per test: its breakers start closed."""
    with TestClient(create_app(base_settings)) as c:
        yield c


def post(client: TestClient, query: str, **variables: Any) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    r = client.post("/graphql", json={"query": query, "variables": variables})
    elapsed = time.monotonic() - start
    assert r.status_code == 200, r.text
    return r.json(), elapsed


def data_of(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    return body["data"]  # type: ignore[no-any-return]


def statuses(results: list[dict[str, Any]]) -> dict[str, str]:
    return {r["source"]["id"]: r["status"] for r in results}


PATIENTS = """query {
  patients(first: 500) {
    totalCount
    sourceResults { source { id } status count error latencyMs }
    edges { node { patientId presentIn { id } missingFrom { id }
      studies { studyInstanceUid presentIn { id } } } }
  }
}"""

STUDIES = """query {
  studies(first: 500) {
    totalCount
    sourceResults { source { id } status count error }
    edges { node { studyInstanceUid presentIn { id } missingFrom { id } } }
  }
}"""


def expected_patients(truth: GroundTruth, up: list[str]) -> dict[str, list[str]]:
    """PatientID -> the answering archives holding the patient."""
    out = {}
    for p in truth.patients:
        held = [s for s in ARCHIVES if s in up and s in p.sources]
        if held:
            out[p.patient_id] = held
    return out


def expected_studies(truth: GroundTruth, up: list[str]) -> dict[str, list[str]]:
    out = {}
    for st in truth.studies:
        held = [s for s in ARCHIVES if s in up and s in st.sources]
        if held:
            out[st.study_uid] = held
    return out


def test_all_up_baseline(client: TestClient, truth: GroundTruth) -> None:
    data = data_of(post(client, PATIENTS)[0])["patients"]
    assert statuses(data["sourceResults"]) == dict.fromkeys(ARCHIVES, "OK")
    got = {e["node"]["patientId"]: [s["id"] for s in e["node"]["presentIn"]] for e in data["edges"]}
    assert got == expected_patients(truth, ARCHIVES)


def test_stopped_archive(private_stack: LocalStack, client: TestClient, truth: GroundTruth) -> None:
    private_stack.stop_service("dcm4chee")
    try:
        body, elapsed = post(client, PATIENTS)
        studies_body, _ = post(client, STUDIES)
    finally:
        private_stack.start_service("dcm4chee")
    up = ["orthanc", "legacy"]
    data = data_of(body)["patients"]
    results = {r["source"]["id"]: r for r in data["sourceResults"]}
    assert statuses(data["sourceResults"]) == {"orthanc": "OK", "dcm4chee": "ERROR", "legacy": "OK"}
    assert results["dcm4chee"]["count"] is None
    assert results["dcm4chee"]["error"].startswith("SourceUnavailable")
    assert elapsed < 5.0  # connection refused: no waiting for the 5 s timeout
    # the others' data is complete: every patient they hold, presence among them only
    nodes = {e["node"]["patientId"]: e["node"] for e in data["edges"]}
    expected = expected_patients(truth, up)
    assert data["totalCount"] == len(expected)
    assert {k: [s["id"] for s in n["presentIn"]] for k, n in nodes.items()} == expected
    for pid, node in nodes.items():
        assert "dcm4chee" not in [s["id"] for s in node["missingFrom"]], pid
        p = next(p for p in truth.patients if p.patient_id == pid)
        want = sorted(u for u in p.study_uids if set(up) & set(st_sources(truth, u)))
        assert sorted(s["studyInstanceUid"] for s in node["studies"]) == want, pid

    sdata = data_of(studies_body)["studies"]
    assert statuses(sdata["sourceResults"]) == {
        "orthanc": "OK",
        "dcm4chee": "ERROR",
        "legacy": "OK",
    }
    got = {
        e["node"]["studyInstanceUid"]: [s["id"] for s in e["node"]["presentIn"]]
        for e in sdata["edges"]
    }
    assert got == expected_studies(truth, up)


def st_sources(truth: GroundTruth, uid: str) -> list[str]:
    return next(st.sources for st in truth.studies if st.study_uid == uid)


def test_hanging_archive_answers_within_its_timeout(
    base_settings: Settings, truth: GroundTruth, hanging_port: int
) -> None:
    settings = with_stuck(base_settings, hanging_port)
    with TestClient(create_app(settings)) as client:
        post(client, "{ sources { id } }")  # warm up: migrations, connections
        body, elapsed = post(client, PATIENTS)
        studies_body, studies_elapsed = post(client, STUDIES)
    assert elapsed <= STUCK_TIMEOUT_S * 1.1, elapsed  # the source timeout plus 10%
    assert studies_elapsed <= STUCK_TIMEOUT_S * 1.1, studies_elapsed
    assert elapsed >= STUCK_TIMEOUT_S * 0.95  # it did wait for the hanging archive
    data = data_of(body)["patients"]
    want = {**dict.fromkeys(ARCHIVES, "OK"), "stuck": "TIMEOUT"}
    assert statuses(data["sourceResults"]) == want
    stuck = next(r for r in data["sourceResults"] if r["source"]["id"] == "stuck")
    assert stuck["count"] is None and f"within {STUCK_TIMEOUT_S:g}s" in stuck["error"]
    got = {e["node"]["patientId"]: [s["id"] for s in e["node"]["presentIn"]] for e in data["edges"]}
    assert got == expected_patients(truth, ARCHIVES)
    for e in data["edges"]:  # the nested level did not wait for the hanging archive again
        p = next(p for p in truth.patients if p.patient_id == e["node"]["patientId"])
        assert sorted(s["studyInstanceUid"] for s in e["node"]["studies"]) == sorted(p.study_uids)
        assert "stuck" not in [s["id"] for s in e["node"]["missingFrom"]]
    sdata = data_of(studies_body)["studies"]
    assert statuses(sdata["sourceResults"]) == want
    assert sdata["totalCount"] == len(truth.studies)


def test_query_deadline(
    base_settings: Settings,
    truth: GroundTruth,
    hanging_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    short = strawberry.Schema(query=Query, extensions=extensions(deadline_s=0.5))
    monkeypatch.setattr(app_module, "schema", short)
    settings = with_stuck(base_settings, hanging_port, timeout_s=30)
    name = truth.patients[0].name.split("^")[0]
    with TestClient(create_app(settings)) as client:
        query = "query($n: String) { patients(filter: {name: $n}) { totalCount } }"
        body, elapsed = post(client, query, n=name)
        after, _ = post(client, "{ sources { id } }")
    assert elapsed < 2.0, elapsed  # the upstream timeout is 30 s
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == [DEADLINE_CODE]
    assert body["errors"][0]["message"] == "query deadline exceeded (0.5 s)"
    assert name not in str(body)
    assert [s["id"] for s in data_of(after)["sources"]] == [*ARCHIVES, "stuck"]


def test_dicomweb_answers_without_a_hanging_archive_and_names_it(
    base_settings: Settings, truth: GroundTruth, hanging_port: int
) -> None:
    """QIDO-RS through /dicomweb: within the timeout plus 10 %, the others' studies
    complete, the hanging archive named in a `Warning: 299` header."""
    settings = with_stuck(base_settings, hanging_port)
    with TestClient(create_app(settings)) as client:
        client.get("/health")
        started = time.perf_counter()
        answer = client.get("/dicomweb/studies", params={"limit": 1000})
        elapsed = time.perf_counter() - started
    assert answer.status_code == 200
    assert STUCK_TIMEOUT_S * 0.95 <= elapsed <= STUCK_TIMEOUT_S * 1.1, elapsed
    assert answer.headers["warning"] == '299 pacs-gateway "partial result: stuck TIMEOUT"'
    uids = {s["0020000D"]["Value"][0] for s in answer.json()}
    assert uids == set(expected_studies(truth, ARCHIVES))


def test_dicomweb_retrieval_goes_to_the_holder_still_up(
    private_stack: LocalStack, client: TestClient, truth: GroundTruth
) -> None:
    """An instance held by orthanc and dcm4chee, retrieved while dcm4chee is stopped."""
    study = next(s for s in truth.studies if {"orthanc", "dcm4chee"} <= set(s.sources))
    series = next(se for se in study.series if study.instances["orthanc"].get(se.series_uid))
    sop = study.instances["orthanc"][series.series_uid][0]
    path = f"/dicomweb/studies/{study.study_uid}/series/{series.series_uid}/instances/{sop}"
    private_stack.stop_service("dcm4chee")
    try:
        answer = client.get(path)
        listed = client.get(f"/dicomweb/studies/{study.study_uid}/series")
    finally:
        private_stack.start_service("dcm4chee")
    assert answer.status_code == 200
    assert sop.encode() in answer.content
    assert listed.status_code == 200 and "dcm4chee ERROR" in listed.headers["warning"]
