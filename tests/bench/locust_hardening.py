"""Locust users for `tests/bench/bench_load.py` (issue 12's load test); not run by pytest.

`Clinician`: a dashboard user (its own API token) mixing patient search, study comparison
and job listing. `Abuser` (when named on the command line, one of it): the outside trial's
abusive requests in a loop, without pause, all of them or the one kind $LOAD_ABUSE names.
Each request's name, latency and failure (None: success) is written to $LOAD_OUT at the
end (the orchestrator computes the percentiles of the normal clients; `abuse:` apart).
"""

from __future__ import annotations

import itertools
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locust import HttpUser, between, constant, events, task

DATA: dict[str, Any] = json.loads(Path(os.environ["LOAD_DATA"]).read_text())
TOKENS = itertools.cycle(DATA["tokens"])
LATENCIES: list[tuple[str, float, str | None]] = []

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
    why = None if exception is None else str(exception)[:120]  # the failure, its cause
    LATENCIES.append((name, response_time, why))  # abuse: ones apart


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


SYNC = "mutation($i: SyncInput!) { syncStudies(input: $i) { id } }"
DRY_SYNC = {"from": "orthanc", "to": "dcm4chee", "dryRun": True}
NONCE = "NONCE"  # replaced by a random number in each request: new UIDs, a new document
JSON_BODY = {"content-type": "application/json"}


def _body(query: str, **variables: Any) -> bytes:
    return json.dumps({"query": query, "variables": variables}).encode()


def _sync(n: int) -> bytes:
    uids = [f"1.2.826.0.1.3680043.8.498.{NONCE}.{i}" for i in range(n)]
    return _body(SYNC, i={**DRY_SYNC, "studyInstanceUids": uids})


# The trial's abusive requests by name: the arguments of each POST. Bodies are made once
# and only their nonce changes per request: building a 5 MB body in the locust process
# stalls every simulated user of it (gevent), which the normal clients' latencies showed.
ABUSE: dict[str, Callable[[], dict[str, Any]]] = {
    # 1: a sync of 10,000 UIDs (the bound), then of 100,000 (over the body limit)
    "sync-10k": lambda: {"data": _sync(10_000)},
    "sync-100k": lambda: {"data": _sync(100_000)},
    # 2: a 2 MB body padded with a comment
    "padded": lambda: {"data": _body("{ sources { id } }\n#" + "x" * 2_000_000)},
    # 3: 225 repeated nested selections, a new document each time (an alias: a comment is
    # not new to the document cache); 1-2 s to validate without the bound on repeats
    "nested": lambda: {
        "data": _body(
            f"{{ a{NONCE}: __typename {' '.join(['sources { id health { up } }'] * 225)} }}"
        )
    },
    # 4, 9: wildcard comparison, wildcard dates
    "compare-star": lambda: {"data": _body('{ comparePatient(patientId: "*") { inSync } }')},
    "date-star": lambda: {
        "data": _body('{ studies(filter: {studyDate: "2016*"}) { totalCount } }')
    },
    # 5: a foreign Host; 7: bodies that are not GraphQL requests
    "host": lambda: {"data": _body("{ sources { id } }"), "headers": {"host": "evil.example:8000"}},
    "null-body": lambda: {"data": b"null"},
    "brackets": lambda: {"data": b"[" * 100_000},
    # 8, 12: a NUL byte and a 100,000-character patient ID
    "nul": lambda: {
        "data": _body('query { rtStructResults(studyInstanceUid: "1.2\\u0000") { jobId } }')
    },
    "long-id": lambda: {
        "data": _body("query($p: String!) { patient(patientId: $p) { name } }", p="P" * 100_000)
    },
}


class Abuser(HttpUser):
    """The abusive client: the trial's findings in a loop, without pause; only the kind
    named by $LOAD_ABUSE when it names one (default: all of them)."""

    wait_time = constant(0)
    fixed_count = 1

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {DATA['abuser']}"
        only = os.environ.get("LOAD_ABUSE", "all")
        kinds = list(ABUSE) if only == "all" else [only]
        assert all(k in ABUSE for k in kinds), only
        self.requests = {k: ABUSE[k]() for k in kinds}  # made once

    @task
    def loop(self) -> None:
        for name, kwargs in self.requests.items():
            body: bytes = kwargs["data"]
            if NONCE.encode() in body:
                body = body.replace(NONCE.encode(), str(random.randrange(10**9)).encode())
            headers = {**JSON_BODY, **kwargs.get("headers", {})}
            with self.client.post(
                "/graphql", name=f"abuse:{name}", catch_response=True, data=body, headers=headers
            ) as r:
                r.success()  # refusals are the expected answer
