"""HTTP hardening (issue 12's findings 5-12), each a case that failed before.

The gateway runs against the session's real stack (open mode: the checks here come
before any login).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from graphql import get_introspection_query
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from gateway.core.settings import Settings
from gateway.server.app import create_app
from gateway.server.ratelimit import TimeShares
from resolvers import limits

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def _error(response: object) -> dict:
    body = response.json()  # type: ignore[attr-defined]
    [error] = body["errors"]
    return error


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'"a string"', "JSON object"),
        (b"null", "JSON object"),
        (b'{"query": "\xff\xfe"}', "UTF-8"),
        (b"[" * 100_000, "nests too deeply"),
        (b'{"query": ', "not valid JSON"),
    ],
)
def test_malformed_bodies_are_400_with_a_code(client: TestClient, body: bytes, why: str) -> None:
    r = client.post("/graphql", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    error = _error(r)
    assert error["extensions"]["code"] == "BAD_REQUEST" and why in error["message"]


def test_a_body_over_the_limit_is_refused_while_read(
    client: TestClient, settings: Settings
) -> None:
    padding = "#" * (settings.max_body_bytes + 10)
    r = client.post("/graphql", json={"query": f"{{ sources {{ id }} }}\n{padding}"})
    assert r.status_code == 413 and _error(r)["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert client.post("/graphql", json={"query": "{ sources { id } }"}).status_code == 200


def test_a_foreign_host_is_refused(client: TestClient) -> None:
    r = client.post(
        "/graphql", json={"query": "{ sources { id } }"}, headers={"host": "evil.example:8000"}
    )
    assert r.status_code == 400 and "sources" not in r.text
    ok = client.post(
        "/graphql", json={"query": "{ sources { id } }"}, headers={"host": "127.0.0.1:8000"}
    )
    assert ok.status_code == 200 and ok.json()["data"]["sources"]


@pytest.mark.parametrize("origin", ["https://testserver", "http://evil.example"])
def test_websocket_origin_is_checked_with_its_scheme(client: TestClient, origin: str) -> None:
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect(
            "/graphql", subprotocols=["graphql-transport-ws"], headers={"origin": origin}
        ) as ws:
            ws.send_json({"type": "connection_init"})
            ws.receive_json()
    assert closed.value.code == 4403


def test_a_same_origin_websocket_is_served(client: TestClient) -> None:
    with client.websocket_connect(
        "/graphql",
        subprotocols=["graphql-transport-ws"],
        headers={"origin": "http://testserver"},
    ) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"


def test_html_has_security_headers(client: TestClient) -> None:
    r = client.get("/graphql", headers={"accept": "text/html"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    api = client.post("/graphql", json={"query": "{ sources { id } }"})
    assert api.headers["x-content-type-options"] == "nosniff"


def test_several_operations_need_an_operation_name(client: TestClient) -> None:
    doc = "query A { sources { id } } query B { sources { name } }"
    refused = client.post("/graphql", json={"query": doc})
    assert _error(refused)["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    chosen = client.post("/graphql", json={"query": doc, "operationName": "B"})
    assert "name" in chosen.json()["data"]["sources"][0]


def test_a_subscription_over_http_is_refused_with_a_code(client: TestClient) -> None:
    r = client.post("/graphql", json={"query": "subscription { jobEvents { jobId } }"})
    assert _error(r)["extensions"]["code"] == "BAD_REQUEST"


def test_long_or_nul_keys_are_bad_input_without_echo(client: TestClient) -> None:
    long_id = "P" * 100_000
    r = client.post(
        "/graphql",
        json={
            "query": "query($p: String!) { patient(patientId: $p) { name } }",
            "variables": {"p": long_id},
        },
    )
    error = _error(r)
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and len(error["message"]) < 100
    bad_uid = client.post(
        "/graphql",
        json={"query": 'query { rtStructResults(studyInstanceUid: "1.2\\u0000") { jobId } }'},
    )
    assert _error(bad_uid)["extensions"]["code"] == "BAD_USER_INPUT"
    assert json.dumps(r.json()).count("P" * 100) == 0


STUDIES_BY_DATE = """query($d: String) {
  studies(filter: {studyDate: $d}, first: 5) { sourceResults { status } edges { cursor } }
}"""
BAD_KEYS = [
    ("studies", "studyDate", "2016*"),
    ("studies", "studyDate", "?"),
    ("studies", "studyDate", "*"),
    ("studies", "studyDate", "2016-13-01"),
    ("studies", "studyDate", "20161301"),
    ("studies", "studyDate", "20161231-20160101"),
    ("studies", "studyInstanceUid", "1.2.*"),
    ("studies", "modality", "C*"),
    ("studies", "accessionNumber", "A" * 17),
    ("studies", "description", "x\x00y"),
    ("patients", "birthDate", "?"),
    ("patients", "birthDate", "1947*"),
    ("patients", "birthDate", "19470230"),
    ("patients", "patientId", "MRN\\MRN2"),
]


@pytest.mark.parametrize(("field", "key", "value"), BAD_KEYS)
def test_invalid_matching_keys_are_bad_input_without_echo(
    client: TestClient, field: str, key: str, value: str
) -> None:
    """Finding 9: keys an archive would refuse (or misread) never reach it."""
    query = (
        f"query($v: String) {{ {field}(filter: {{{key}: $v}}) {{ sourceResults {{ status }} }} }}"
    )
    r = client.post("/graphql", json={"query": query, "variables": {"v": value}})
    error = _error(r)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["message"].startswith(key) and value not in error["message"]
    assert r.json()["data"] is None


@pytest.mark.parametrize("value", ["20160101", "20160101-", "-20160101", "19000101-20991231"])
def test_valid_date_keys_and_open_ranges_still_reach_every_archive(
    client: TestClient, value: str
) -> None:
    body = client.post("/graphql", json={"query": STUDIES_BY_DATE, "variables": {"d": value}})
    data = body.json()
    assert not data.get("errors"), data
    assert {s["status"] for s in data["data"]["studies"]["sourceResults"]} == {"OK"}


def test_nested_study_filters_are_checked_too(client: TestClient, truth: object) -> None:
    nested = 'studies(filter: {studyDate: "2016*"}) { studyDate }'
    query = f"{{ patients(first: 1) {{ edges {{ node {{ {nested} }} }} }} }}"
    body = client.post("/graphql", json={"query": query}).json()
    codes = {e["extensions"]["code"] for e in body["errors"]}
    assert codes == {"BAD_USER_INPUT"}


@pytest.mark.parametrize("value", ["1.2.*", "", "çó", "1.2\\1.3", "1." + "2" * 70])
def test_study_lookups_take_a_uid(client: TestClient, value: str) -> None:
    """A study looked up by something that is not a UID is refused, never sent to archives."""
    for field in (
        "study(studyInstanceUid: $u) { studyInstanceUid }",
        "compareStudy(studyInstanceUid: $u) { inSync }",
    ):
        r = client.post(
            "/graphql",
            json={"query": f"query($u: String!) {{ {field} }}", "variables": {"u": value}},
        )
        error = _error(r)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["message"].startswith("studyInstanceUid")


@pytest.mark.parametrize("value", ["*", "", "MRN*", "MRN?", "M" * 65])
def test_compare_patient_takes_an_exact_id(client: TestClient, value: str) -> None:
    """Finding 4: a wildcard (or nothing) would compare every patient's studies."""
    for field in ("comparePatient(patientId: $p) { inSync }", "patient(patientId: $p) { name }"):
        r = client.post(
            "/graphql",
            json={"query": f"query($p: String!) {{ {field} }}", "variables": {"p": value}},
        )
        error = _error(r)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["message"].startswith("patientId")


COSTLY = """{ patients(first: 500) { edges { node { studies { series {
  instances { sopInstanceUid presentIn { id } } } } } } } }"""


def test_a_costly_query_is_refused_before_it_runs(client: TestClient, settings: Settings) -> None:
    """Every instance of every series of 500 patients' studies: refused with the estimate."""
    r = client.post("/graphql", json={"query": COSTLY})
    body = r.json()
    [error] = body["errors"]
    ext = error["extensions"]
    assert ext["code"] == "QUERY_TOO_COSTLY" and body["data"] is None
    assert ext["maxCost"] == settings.max_query_cost < ext["cost"]
    assert str(ext["cost"]) in error["message"]
    # the dashboard's largest page (and the tests' 500) stay well under the default
    page = "{ patients(first: 500) { edges { node { patientId studies { studyInstanceUid } } } } }"
    assert "errors" not in client.post("/graphql", json={"query": page}).json()


def test_the_cost_budget_is_configurable(settings: Settings) -> None:
    small = replace(settings, max_query_cost=50)
    with TestClient(create_app(small)) as c:
        page = "{ patients(first: 100) { edges { node { patientId } } } }"
        error = _error(c.post("/graphql", json={"query": page}))
        assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
        assert error["extensions"]["maxCost"] == 50
        assert "errors" not in c.post("/graphql", json={"query": "{ sources { id } }"}).json()


def test_health_answers_while_large_documents_are_validated(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 3: documents whose validation takes a second or more each (repeated nested
    selections, each made new by a comment) are validated off the event loop. The bound on
    repeats and the token limit refuse these before validation (the test below): lifted
    here, since documents within the bounds may still take tens of milliseconds each to
    validate."""
    monkeypatch.setattr(limits, "MAX_REPEATS", 10**6)
    monkeypatch.setattr(limits, "MAX_TOKENS", 10**6)
    client.get("/health")  # warm
    done: list[float] = []

    def post(i: int) -> None:
        heavy = " ".join(["sources { id health { up } }"] * (200 + i))  # distinct documents
        started = time.perf_counter()
        r = client.post("/graphql", json={"query": f"# {uuid.uuid4()}\n{{ {heavy} }}"})
        assert r.status_code == 200 and "errors" not in r.json(), r.text[:300]
        done.append(time.perf_counter() - started)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    latencies = []
    while any(t.is_alive() for t in threads):
        started = time.perf_counter()
        assert client.get("/health").status_code == 200
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert len(done) == 4
    assert max(done) > 1.0, "the documents must be expensive for this test to mean anything"
    # inline (before): one /health waited for all four validations, as long as the last
    # document took (7.9 s here), so one or two /health calls fitted in the whole run; off
    # the loop each waits at most for its share of the CPU (the validating threads hold
    # the GIL much of the time: a CI run saw one /health take 0.60 of the longest document).
    # Ratios in the same run, not times: a slow machine slows both sides alike.
    assert len(latencies) >= 3, (latencies, done)
    assert statistics.median(latencies) < 0.5 * max(done), (latencies, done)
    assert max(latencies) < 0.85 * max(done), (latencies, done)


def test_repeated_selections_are_refused_before_validation(client: TestClient) -> None:
    """Finding 3 again: the repeated selections (0.3 s of CPU to validate 120 of them, 1-2 s
    for 300) are counted and refused first, at a cost of milliseconds; GraphiQL's
    introspection query passes."""
    heavy = " ".join(["sources { id health { up } }"] * 120)  # under the token limit
    spent = []
    for i in range(3):  # the least of three: other threads of the test process count too
        started = time.process_time()  # the app's threads are this process's
        r = client.post("/graphql", json={"query": f"{{ a{i}: __typename {heavy} }}"})
        spent.append(time.process_time() - started)
        error = _error(r)
        assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX" and r.json()["data"] is None
    assert min(spent) < 0.2, f"{spent} s of CPU to refuse"
    introspection = get_introspection_query(input_value_deprecation=True, schema_description=True)
    answer = client.post("/graphql", json={"query": introspection}).json()
    assert "errors" not in answer and answer["data"]["__schema"]["queryType"]


def test_the_field_bound_is_configurable(settings: Settings) -> None:
    small = replace(settings, max_fields=5)
    with TestClient(create_app(small)) as c:
        seven = "{ sources { id name kind roles health { up } } }"
        error = _error(c.post("/graphql", json={"query": seven}))
        assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert "more than 5" in error["message"]
        assert "errors" not in c.post("/graphql", json={"query": "{ sources { id } }"}).json()


def test_a_caller_over_its_time_budget_waits_and_the_others_do_not(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12's load test: costly requests sent one after the other (a 10,000-UID
    submission takes the gateway a quarter to one second) took the process from the other
    clients at any sensible rate of requests. Each request is now charged the time it took
    (here a document's validation in the documents' thread: 0.2-0.3 s); the caller in debt
    waits, answered 429 after a second when its debt takes longer to repay; another caller
    does not. Contention is held on (as if other callers were always being served); a
    caller alone is the test after this one."""
    monkeypatch.setattr(limits, "MAX_REPEATS", 10**6)  # a document slow to validate
    monkeypatch.setattr(TimeShares, "_others", lambda self, key: True)
    charged = _charges(monkeypatch)
    cheap = {"query": "{ sources { id } }"}
    tight = replace(settings, rate_per_s=0, time_per_s=0.02, time_burst_s=0.05)
    app = create_app(tight)
    with TestClient(app, client=("192.0.2.1", 1000)) as greedy:
        other = TestClient(app, client=("192.0.2.2", 1000))  # the same app, its lifespan on
        r = greedy.post("/graphql", json={"query": _slow_to_validate()})
        assert r.status_code == 200 and "errors" not in r.json(), r.text[:300]
        assert charged.wait(5)  # charged once its answer has gone out
        started = time.monotonic()
        r = greedy.post("/graphql", json=cheap)
        assert r.status_code == 429 and _error(r)["extensions"]["code"] == "RATE_LIMITED"
        assert int(r.headers["Retry-After"]) == 3  # a debt of a burst (0.05 s) at 0.02 s/s
        assert time.monotonic() - started >= 0.9, "answered after a second, not at once"
        started = time.monotonic()
        r = other.post("/graphql", json=cheap)
        assert r.status_code == 200 and "errors" not in r.json()
        assert time.monotonic() - started < 0.5, "another caller does not wait"
    short = replace(settings, rate_per_s=0, time_per_s=0.25, time_burst_s=0.1)
    with TestClient(create_app(short)) as c:  # a debt under a second: served once repaid
        charged.clear()
        assert c.post("/graphql", json={"query": _slow_to_validate()}).status_code == 200
        assert charged.wait(5)
        started = time.monotonic()
        r = c.post("/graphql", json=cheap)
        waited = time.monotonic() - started
        assert r.status_code == 200 and "errors" not in r.json()
        # a debt of at most a burst (0.1 s) at 0.25 s/s: up to 0.4 s, less what was repaid
        # before the next request came (a cheap request alone: a few ms)
        assert 0.1 <= waited < 1.0, waited


def test_a_caller_alone_is_never_held_back(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nobody else being served, costly requests are not charged: a script at night
    runs at the gateway's full speed."""
    monkeypatch.setattr(limits, "MAX_REPEATS", 10**6)
    tight = replace(settings, rate_per_s=0, time_per_s=0.05, time_burst_s=0.05)
    with TestClient(create_app(tight)) as c:
        for _ in range(3):
            started = time.monotonic()
            r = c.post("/graphql", json={"query": _slow_to_validate()})
            assert r.status_code == 200 and "errors" not in r.json(), r.text[:300]
            assert time.monotonic() - started < 0.9 + 2 * 0.3  # no wait, no 429


def test_a_caller_has_at_most_so_many_requests_served_at_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests sent together are all begun before any is charged: a caller has at most
    `max_concurrent_per_caller` served at once; beyond, 429 (after the wait)."""
    monkeypatch.setattr(limits, "MAX_REPEATS", 10**6)
    one = replace(settings, rate_per_s=0, max_concurrent_per_caller=1)
    with TestClient(create_app(one)) as c:
        slow: list[int] = []
        first = threading.Thread(
            target=lambda: slow.append(
                c.post("/graphql", json={"query": _slow_to_validate(240)}).status_code
            )
        )
        first.start()
        time.sleep(0.1)  # the first is being validated (0.5 s)
        r = c.post("/graphql", json={"query": "{ sources { id } }"})
        first.join()
        assert r.status_code == 429 and _error(r)["extensions"]["code"] == "RATE_LIMITED"
        assert slow == [200]
        assert c.post("/graphql", json={"query": "{ sources { id } }"}).status_code == 200


def _charges(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set each time a request has been charged (after its answer has gone out, so a
    client may ask again before)."""
    charged = threading.Event()
    end = TimeShares.end

    def ended(self: TimeShares, key: str, seconds: float, contended: bool) -> None:
        end(self, key, seconds, contended)
        charged.set()

    monkeypatch.setattr(TimeShares, "end", ended)
    return charged


def _slow_to_validate(times: int = 200) -> str:
    """A new document of repeated selections (200: 0.2-0.3 s to validate, 240: 0.5 s;
    MAX_REPEATS lifted)."""
    repeats = " ".join(["sources { id }"] * times)
    return f"{{ a{uuid.uuid4().hex}: __typename {repeats} }}"


def test_a_429_is_answered_after_the_wait(settings: Settings) -> None:
    """Issue 12's load test: a client that ignores Retry-After and asks again at once was
    answered as fast as the gateway could (each answer a parse and an authentication):
    the 429 now comes after the caller's wait (up to a second)."""
    limited = replace(settings, rate_per_s=0.5, burst=1)
    query = {"query": "{ sources { id } }"}
    with TestClient(create_app(limited)) as c:
        c.post("/graphql", json=query)
        started = time.monotonic()
        r = c.post("/graphql", json=query)
        assert r.status_code == 429 and _error(r)["extensions"]["code"] == "RATE_LIMITED"
        assert time.monotonic() - started >= 0.9, "answered after the wait, not at once"
