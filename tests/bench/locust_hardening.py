"""Locust users for `tests/bench/bench_load.py` (issue 12's load test); not run by pytest.

`Clinician`: a dashboard user (its own API token) mixing patient search, study comparison
and job listing. `Abuser` (when named on the command line, one of it): the outside trial's abusive
requests in a loop, without pause. Each normal request's latency is written to
$LOAD_OUT at the end (the orchestrator computes the percentiles of the normal clients).
"""

from __future__ import annotations

import itertools
import json
import os
import random
from pathlib import Path
from typing import Any

from locust import HttpUser, between, constant, events, task

DATA: dict[str, Any] = json.loads(Path(os.environ["LOAD_DATA"]).read_text())
TOKENS = itertools.cycle(DATA["tokens"])
LATENCIES: list[tuple[str, float, bool]] = []

SEARCH = """query($f: PatientFilter, $first: Int!) {
  patients(filter: $f, first: $first) {
    totalCount sourceResults { source { id } status }
    edges { node { patientId name presentIn { id } missingFrom { id } } } } }"""
COMPARE = """query($u: String!) {
  compareStudy(studyInstanceUid: $u) { inSync sources { source { id } present series instances }
    missing { level uid } } }"""
JOBS = "{ jobs(first: 20) { totalCount edges { node { id kind status createdAt } } } }"


@events.request.add_listener
def _record(name: str, response_time: float, exception: Any, **_: Any) -> None:
    if not name.startswith("abuse:"):
        LATENCIES.append((name, response_time, exception is None))


@events.quitting.add_listener
def _write(**_: Any) -> None:
    with open(os.environ["LOAD_OUT"], "w") as out:
        json.dump(LATENCIES, out)


class Clinician(HttpUser):
    """A normal client."""

    wait_time = between(0.2, 0.8)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {next(TOKENS)}"

    def _gql(self, name: str, query: str, **variables: Any) -> None:
        with self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            name=name,
            catch_response=True,
        ) as r:
            if r.status_code != 200 or r.json().get("errors"):
                r.failure(f"{r.status_code}: {r.text[:200]}")

    @task(5)
    def search(self) -> None:
        prefix = random.choice("ABCDEFGHJKLMNPRSTW")
        self._gql("patients", SEARCH, f={"name": f"{prefix}*"}, first=25)

    @task(3)
    def compare(self) -> None:
        self._gql("compareStudy", COMPARE, u=random.choice(DATA["studies"]))

    @task(2)
    def jobs(self) -> None:
        self._gql("jobs", JOBS)


def _uids(n: int) -> list[str]:
    base = random.randrange(10**9)
    return [f"1.2.826.0.1.3680043.8.498.{base}.{i}" for i in range(n)]


class Abuser(HttpUser):
    """The abusive client: every request of the trial's findings, in a loop."""

    wait_time = constant(0)
    fixed_count = 1

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {DATA['abuser']}"

    def _post(self, name: str, **kwargs: Any) -> None:
        with self.client.post("/graphql", name=f"abuse:{name}", catch_response=True, **kwargs) as r:
            r.success()  # refusals are the expected answer

    @task
    def loop(self) -> None:
        sync = "mutation($i: SyncInput!) { syncStudies(input: $i) { id } }"
        body = {"from": "orthanc", "to": "dcm4chee", "dryRun": True}
        # 1: a sync of 10,000 UIDs (the bound), then of 100,000 (over the body limit)
        self._post(
            "sync-10k",
            json={"query": sync, "variables": {"i": {**body, "studyInstanceUids": _uids(10_000)}}},
        )
        self._post(
            "sync-100k",
            json={"query": sync, "variables": {"i": {**body, "studyInstanceUids": _uids(100_000)}}},
        )
        # 2: a 2 MB body padded with a comment
        self._post("padded", json={"query": "{ sources { id } }\n#" + "x" * 2_000_000})
        # 3: repeated nested selections, a new document each time (1-2 s to validate)
        n = random.randrange(150, 300)
        self._post(
            "nested", json={"query": "{ " + " ".join(["sources { id health { up } }"] * n) + " }"}
        )
        # 4, 9: wildcard comparison, wildcard dates
        self._post("compare-star", json={"query": '{ comparePatient(patientId: "*") { inSync } }'})
        self._post(
            "date-star", json={"query": '{ studies(filter: {studyDate: "2016*"}) { totalCount } }'}
        )
        # 5: a foreign Host; 7: bodies that are not GraphQL requests
        self._post(
            "host", json={"query": "{ sources { id } }"}, headers={"host": "evil.example:8000"}
        )
        self._post("null-body", data=b"null", headers={"content-type": "application/json"})
        self._post("brackets", data=b"[" * 100_000, headers={"content-type": "application/json"})
        # 8, 12: a NUL byte and a 100,000-character patient ID
        self._post(
            "nul",
            json={"query": 'query { rtStructResults(studyInstanceUid: "1.2\\u0000") { jobId } }'},
        )
        self._post(
            "long-id",
            json={
                "query": "query($p: String!) { patient(patientId: $p) { name } }",
                "variables": {"p": "P" * 100_000},
            },
        )
