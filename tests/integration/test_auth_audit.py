"""The audit trail against the real stack: what is recorded, what never is, and the hash
chain (`pacs-gateway audit verify` catches an edited or a deleted row).

The tests run in file order: the last ones tamper with the chain.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import delete, select, update

from gateway.auth import audit
from gateway.auth.audit import AuditWriter
from gateway.db.models import AuditEvent
from gateway.jobs.queue import Keys
from gateway.runtime import Runtime
from tests.auth_support import LOGIN, AuthEnv, auth_env, leaked
from tests.jobs_support import WorkerProcess

EVENTS = """query($f: AuditFilter, $first: Int, $after: String) {
  auditEvents(filter: $f, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { id at actor action objectType objectRef outcome address details } }
  }
}"""
NAMES = "query Names { patients(first: 50) { edges { node { patientId name birthDate } } } }"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthEnv]:
    """The module's required-auth stack, seeded with a few demo patients."""
    yield from auth_env(tmp_path_factory)


def _events(env: AuthEnv, **filter_: Any) -> list[dict[str, Any]]:
    page = env.as_("admin").data(EVENTS, f=filter_ or None, first=500)["auditEvents"]
    return [e["node"] for e in page["edges"]]


def _eventually(probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll until `probe()` is truthy: most events are written behind the request."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found or time.monotonic() > deadline:
            assert found, "the audit event did not appear"
            return found
        time.sleep(0.2)


def _actor(env: AuthEnv, who: str) -> str:
    return f"user:{env.user_ids[who]}"


def _all_rows(env: AuthEnv) -> list[AuditEvent]:
    async def work(runtime: Runtime) -> list[AuditEvent]:
        async with runtime.sessions() as session:
            return list(await session.scalars(select(AuditEvent).order_by(AuditEvent.id)))

    rows: list[AuditEvent] = env.run(work)
    return rows


def test_logins_and_their_failures_are_recorded(env: AuthEnv) -> None:
    anon = env.as_(None)
    anon.refused(LOGIN, "UNAUTHENTICATED", u="radiologist", p="wrong-password-1")
    anon.refused(LOGIN, "UNAUTHENTICATED", u="Radiologist", p="wrong-password-2")
    anon.refused(LOGIN, "UNAUTHENTICATED", u="mallory", p="wrong-password-3")
    failed = _events(env, action="login-failed")
    assert len(failed) == 3
    assert all(e["outcome"] == "refused" and e["address"] for e in failed)
    rid = _actor(env, "radiologist")
    assert sorted(e["actor"] or "" for e in failed) == ["", rid, rid], "null for an unknown user"
    assert "mallory" not in json.dumps(failed), "an unknown name typed is not recorded"

    logins = _events(env, action="login")
    assert {e["actor"] for e in logins} >= {_actor(env, w) for w in ("admin", "researcher")}
    # one actor names a user whatever they did: filtering by it finds their failures too
    mine = {e["action"] for e in _events(env, actor=rid)}
    assert {"login", "login-failed"} <= mine


def test_identity_reads_are_recorded_with_opaque_references(env: AuthEnv) -> None:
    page = env.as_("radiologist").data(NAMES)["patients"]
    assert len(page["edges"]) == len(env.truth.patients)
    reads = _eventually(lambda: _events(env, action="phi-read", actor=_actor(env, "radiologist")))
    details = reads[0]["details"]
    assert details["operation"] == "Names"
    assert details["count"] == len(env.truth.patients), "one reference per patient read"
    assert len(details["refs"]) == details["count"]
    assert all(len(r) == 24 and int(r, 16) >= 0 for r in details["refs"]), "digests"
    assert leaked(json.dumps(reads, ensure_ascii=False), env.truth) == []
    # the same read again names the same patients by the same references
    env.as_("radiologist").data(NAMES)
    again = _eventually(
        lambda: [
            e
            for e in _events(env, action="phi-read", actor=_actor(env, "radiologist"))
            if e["id"] != reads[0]["id"]
        ]
    )
    assert sorted(again[0]["details"]["refs"]) == sorted(details["refs"])


def test_a_query_without_identity_writes_no_identity_read(env: AuthEnv) -> None:
    before = len(_events(env, action="phi-read"))
    env.as_("radiologist").data("{ patients(first: 50) { totalCount edges { cursor } } }")
    env.as_("admin").data("{ sources { id } }")
    time.sleep(1.0)
    assert len(_events(env, action="phi-read")) == before


def test_jobs_tokens_users_and_groups_are_recorded(env: AuthEnv) -> None:
    radiologist, admin = env.as_("radiologist"), env.as_("admin")
    body = {
        "from": "orthanc",
        "to": "dcm4chee",
        "studyInstanceUids": [env.truth.studies[0].study_uid],
        "dryRun": True,
    }
    job = radiologist.data("mutation($i: SyncInput!) { syncStudies(input: $i) { id } }", i=body)
    job_id = job["syncStudies"]["id"]
    radiologist.data("mutation($id: ID!) { cancelJob(id: $id) { id } }", id=job_id)
    radiologist.data("mutation($id: ID!) { retryJob(id: $id) { id } }", id=job_id)
    env.as_("researcher").refused(
        "mutation($i: SyncInput!) { syncStudies(input: $i) { id } }", i=body
    )
    made = radiologist.data('mutation { createApiToken(name: "audit") { apiToken { id } } }')
    token_id = made["createApiToken"]["apiToken"]["id"]
    radiologist.data("mutation($id: ID!) { revokeApiToken(id: $id) }", id=token_id)
    uid, _ = env.new_user("audited", ["RESEARCHER"])
    admin.data(
        "mutation($id: ID!) { updateUser(id: $id, patch: {roles: [RADIOLOGIST]}) { id } }", id=uid
    )
    group = admin.data('mutation { createGroup(input: {name: "g", roles: []}) { id } }')
    admin.data("mutation($id: ID!) { deleteGroup(id: $id) }", id=group["createGroup"]["id"])

    rid, aid = _actor(env, "radiologist"), _actor(env, "admin")
    expected = [
        ("job-submit", rid, "ok", job_id),
        ("job-cancel", rid, "ok", job_id),
        ("job-retry", rid, "ok", job_id),
        ("job-submit", _actor(env, "researcher"), "refused", None),
        ("token-create", rid, "ok", token_id),
        ("token-revoke", rid, "ok", token_id),
        ("user-create", aid, "ok", uid),
        ("user-update", aid, "ok", uid),
        ("group-create", aid, "ok", group["createGroup"]["id"]),
        ("group-delete", aid, "ok", group["createGroup"]["id"]),
    ]

    def found() -> list[Any]:
        have = {(e["action"], e["actor"], e["outcome"], e["objectRef"]) for e in _events(env)}
        return [x for x in expected if x not in have]

    _eventually(lambda: not found())
    assert found() == []
    update_ = next(e for e in _events(env, action="user-update") if e["objectRef"] == uid)
    assert update_["details"] == {"changed": ["roles"]}


def test_refusals_are_recorded_by_field_never_by_value(env: AuthEnv) -> None:
    researcher = env.as_("researcher")
    researcher.refused(NAMES)
    researcher.refused("query Admin { who: users { id } }")
    researcher.refused('{ patients(filter: {name: "BERGER*"}) { totalCount } }')
    rs = _actor(env, "researcher")

    def refused() -> list[dict[str, Any]]:
        return [e for e in _events(env, action="refused", actor=rs)]

    events = _eventually(lambda: len(refused()) >= 3 and refused())
    by_op = {e["details"]["operation"]: e for e in events}
    names = by_op["Names"]["details"]
    assert set(names["fields"]) <= {"patientId", "name", "birthDate"} and names["count"] >= 1
    assert by_op["Admin"]["details"]["fields"] == ["users"], "the field, not the client's alias"
    assert all(e["outcome"] == "refused" and e["address"] for e in events)
    assert leaked(json.dumps(events, ensure_ascii=False), env.truth) == []
    assert "BERGER" not in json.dumps(events), "nor what the refused search asked for"
    # a refused job submission has its own event (job-submit, refused), not a second one
    assert not any("syncStudies" in e["details"]["fields"] for e in _events(env, action="refused"))


def test_audit_events_page_newest_first_and_filter_by_time(env: AuthEnv) -> None:
    admin = env.as_("admin")
    every = _events(env)
    ids = [int(e["id"]) for e in every]
    assert ids == sorted(ids, reverse=True)
    first = admin.data(EVENTS, first=3)["auditEvents"]
    assert first["totalCount"] == len(every) and first["pageInfo"]["hasNextPage"] is True
    second = admin.data(EVENTS, first=3, after=first["pageInfo"]["endCursor"])["auditEvents"]
    got = [e["node"]["id"] for e in first["edges"] + second["edges"]]
    assert got == [e["id"] for e in every[:6]]
    middle = every[len(every) // 2]["at"]
    since = _events(env, since=middle)
    until = _events(env, until=middle)
    assert len(since) + len(until) == len(every) and since and until
    assert all(e["at"] >= middle for e in since)
    admin.refused(EVENTS, "BAD_USER_INPUT", first=3, after="not-a-cursor")
    admin.refused(EVENTS, "PAGE_SIZE_EXCEEDED", first=501)


def test_identity_is_refused_with_503_while_the_audit_cannot_keep_up(
    env: AuthEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never served unaudited: identity waits for the trail, the rest of the API does not."""
    monkeypatch.setattr(AuditWriter, "saturated", property(lambda self: True))
    response = env.as_("radiologist").post(NAMES)
    assert response.status_code == 503, response.text
    codes = {e["extensions"]["code"] for e in response.json()["errors"]}
    assert codes == {"AUDIT_UNAVAILABLE"}
    assert leaked(response.text, env.truth) == []
    fine = env.as_("radiologist").post("{ patients(first: 50) { totalCount } }")
    assert fine.status_code == 200 and not fine.json().get("errors")
    monkeypatch.undo()
    assert env.as_("radiologist").post(NAMES).status_code == 200


def test_no_event_holds_a_patient_value(env: AuthEnv) -> None:
    """Through the API, the CLI export and the table itself."""
    everything = json.dumps(_events(env), ensure_ascii=False)
    assert leaked(everything, env.truth) == []
    exported = env.cli("audit", "export")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(lines) == len(_all_rows(env)) and lines[0]["hash"]
    assert leaked(exported.stdout, env.truth) == []
    uids = [s.study_uid for s in env.truth.studies]
    assert not any(u in exported.stdout for u in uids), "nor a study UID"


def test_a_worker_forwards_each_event_to_syslog_once_in_order(env: AuthEnv) -> None:
    """RFC 5424 over UDP to a listener of the test's; a stopped worker resumes where it
    stopped; the chain's hashes ride along; no patient value in any message."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    config = env.workdir / "syslog.toml"
    target = f"udp://127.0.0.1:{listener.getsockname()[1]}"
    config.write_text(
        env.config.read_text().replace("[auth]\n", f'[auth]\naudit_syslog = "{target}"\n')
    )
    position_key = Keys.for_database(env.settings.database_url).audit_syslog
    redis = Redis.from_url(env.settings.redis_url)
    received: list[bytes] = []

    def receive(until: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, f"syslog: {len(received)} messages"
            with contextlib.suppress(TimeoutError):
                received.append(listener.recv(65536))

    def ids() -> list[int]:
        return [int(re.search(rb' id="(\d+)"', m)[1]) for m in received]  # type: ignore[index]

    worker = WorkerProcess(config, env.env, env.workdir / "syslog-worker.log").start()
    try:
        _eventually(lambda: redis.get(position_key) is not None, 30)
        start = int(redis.get(position_key) or 0)
        env.as_(None).refused(LOGIN, "UNAUTHENTICATED", u="researcher", p="wrong-password-9")
        env.as_("radiologist").data(NAMES)
        receive(lambda: {"login-failed", "phi-read"} <= {_msgid(m) for m in received})
        worker.stop()
        env.as_("radiologist").data(NAMES)  # written while no worker forwards
        worker.start()
        latest = max(r.id for r in _all_rows(env))
        receive(lambda: bool(received) and max(ids()) >= latest)
    finally:
        worker.stop()
        listener.close()
        redis.close()
    rows = {r.id: r for r in _all_rows(env)}
    assert ids() == sorted(set(ids())), "once each, in chain order"
    assert ids() == [i for i in sorted(rows) if start < i <= max(ids())], "none skipped"
    for data in received:
        row = rows[int(re.search(rb' id="(\d+)"', data)[1])]  # type: ignore[index]
        assert data.startswith(f"<{80 + (5 if row.outcome == 'ok' else 4)}>1 ".encode())
        assert _msgid(data) == row.action and f'hash="{row.hash}"'.encode() in data
        assert json.loads(data.split(b"\xef\xbb\xbf", 1)[1])["details"] == row.detail
    assert leaked(b"".join(received).decode(), env.truth) == []


def _msgid(data: bytes) -> str:
    return data.split(b" ", 6)[5].decode()


async def _chain(runtime: Runtime) -> tuple[int, int | None]:
    """What `audit verify` checks, in process: (events checked, first broken link)."""
    return await audit.verify(runtime.sessions)


def _verify(env: AuthEnv) -> tuple[int, str]:
    run = env.cli("audit", "verify")
    return run.returncode, run.stdout + run.stderr


def test_the_chain_verifies_then_an_edited_row_is_named(env: AuthEnv) -> None:
    code, out = _verify(env)
    assert code == 0, out
    rows = _all_rows(env)
    assert f"{len(rows)} events" in out
    victim = rows[len(rows) // 2]
    original = victim.detail

    async def edit(runtime: Runtime, detail: Any) -> None:
        async with runtime.sessions() as session, session.begin():
            await session.execute(
                update(AuditEvent).where(AuditEvent.id == victim.id).values(detail=detail)
            )

    env.run(lambda r: edit(r, {"edited": True}))
    code, out = _verify(env)
    assert code == 1, out
    assert f"event {victim.id} " in out, out
    env.run(lambda r: edit(r, original))  # put back exactly: whole again
    assert env.run(_chain) == (len(rows), None)


def test_a_deleted_row_is_named_by_its_successor(env: AuthEnv) -> None:
    rows = _all_rows(env)
    victim, successor = rows[3], rows[4]

    async def drop(runtime: Runtime) -> None:
        async with runtime.sessions() as session, session.begin():
            await session.execute(delete(AuditEvent).where(AuditEvent.id == victim.id))

    env.run(drop)
    assert env.run(_chain)[1] == successor.id
