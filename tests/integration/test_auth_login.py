"""Coming in (against the real stack, `[auth] mode` at its default "required"): no token,
login, lockout, logout, API tokens; and the administration of users and groups."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from gateway.auth.epoch import CHECK_EVERY_S
from gateway.db.models import Credential, utcnow
from gateway.server.app import create_app
from tests.auth_support import LOCKOUT_FAILURES, LOCKOUT_S, LOGIN, Api, AuthEnv, auth_env

PATIENTS_Q = "{ patients(first: 50) { totalCount edges { node { patientId } } } }"
ME = "{ me { id username roles sources active } }"
SOURCE_RESULTS = """query($f: PatientFilter) {
  patients(first: 50, filter: $f) {
    edges { node { patientId presentIn { id } } }
    sourceResults { source { id } status count }
  }
}"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthEnv]:
    """The module's required-auth stack, seeded with a few demo patients."""
    yield from auth_env(tmp_path_factory)


def _code(body: dict) -> set[str]:
    return {e["extensions"]["code"] for e in body.get("errors") or []}


# -- 1. no token -----------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "pgs_not-a-token", "pgt_forged"])
def test_a_query_without_a_valid_token_is_401_unauthenticated(
    env: AuthEnv, token: str | None
) -> None:
    response = env.with_token(token).post(PATIENTS_Q)
    assert response.status_code == 401, response.text
    body = response.json()
    assert _code(body) == {"UNAUTHENTICATED"}
    assert body.get("data") is None, "nothing is served without a login"
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
    assert "MRN" not in response.text


def test_other_operations_without_a_token_are_refused_too(env: AuthEnv) -> None:
    anon = env.as_(None)
    for doc in (
        "mutation { logout }",
        'mutation { createApiToken(name: "x") { token } }',
        "{ __typename me { id } }",
        'mutation { login(username: "admin", password: "x") { token } logout }',
    ):
        response = anon.post(doc)
        assert response.status_code == 401, (doc, response.text)
        assert _code(response.json()) == {"UNAUTHENTICATED"}, doc


def test_one_login_per_request(env: AuthEnv) -> None:
    """Aliases would try many passwords in one request, each an argon2 hash of CPU."""
    two = """mutation { a: login(username: "admin", password: "guess-number-1") { token }
                         b: login(username: "admin", password: "guess-number-2") { token } }"""
    spread = """mutation { ...Guesses }
      fragment Guesses on Mutation { a: login(username: "admin", password: "guess-1") { token }
                                     b: login(username: "admin", password: "guess-2") { token } }"""
    for api in (env.as_(None), env.as_("researcher")):
        for doc in (two, spread):
            body = api.refused(doc, "BAD_USER_INPUT")
            assert body.get("data") is None
    # not one of those guesses counted against the account
    assert env.login("admin", "admin-password-123")["token"]
    one = """mutation { ...L } fragment L on Mutation {
      login(username: "admin", password: "admin-password-123") { token } }"""
    assert env.as_(None).data(one)["login"]["token"], "one login through a fragment is fine"
    hidden = "query { ...Me } fragment Me on Query { me { id } }"
    response = env.as_(None).post(hidden)
    assert response.status_code == 401, "a fragment does not hide a field from the check"


def test_login_and_introspection_need_no_token(env: AuthEnv) -> None:
    anon = env.as_(None)
    schema = anon.data('{ __schema { queryType { name } } __type(name: "Patient") { name } }')
    assert schema["__schema"]["queryType"]["name"] == "Query"
    assert schema["__type"]["name"] == "Patient"
    session = env.login("radiologist", "radiologist-password-123")
    assert session["token"].startswith("pgs_")
    assert session["user"]["username"] == "radiologist"
    assert session["user"]["roles"] == ["RADIOLOGIST"]
    expires = datetime.fromisoformat(session["expiresAt"])
    assert expires.astimezone(UTC) > datetime.now(UTC)
    me = env.with_token(session["token"]).data(ME)["me"]
    assert me["username"] == "radiologist" and me["id"] == env.user_ids["radiologist"]


def test_username_is_case_insensitive_at_login(env: AuthEnv) -> None:
    session = env.login("RadioLogist", "radiologist-password-123")
    assert session["user"]["id"] == env.user_ids["radiologist"]


def test_wrong_password_and_unknown_user_get_the_same_refusal(env: AuthEnv) -> None:
    anon = env.as_(None)
    wrong = anon.refused(LOGIN, "UNAUTHENTICATED", u="researcher", p="not-the-password")
    unknown = anon.refused(LOGIN, "UNAUTHENTICATED", u="nobody-at-all", p="not-the-password")
    assert wrong["errors"][0]["message"] == unknown["errors"][0]["message"]
    assert "researcher" not in wrong["errors"][0]["message"]
    assert wrong.get("data") is None and unknown.get("data") is None


def test_lockout_refuses_even_the_right_password_until_it_expires(env: AuthEnv) -> None:
    uid, _ = env.new_user("locky", ["RADIOLOGIST"])
    anon = env.as_(None)
    for _ in range(LOCKOUT_FAILURES):
        anon.refused(LOGIN, "UNAUTHENTICATED", u="locky", p="wrong-password-000")
    locked_at = time.monotonic()
    refused = anon.refused(LOGIN, "UNAUTHENTICATED", u="locky", p="locky-password-123")
    assert refused["errors"][0]["message"] == "invalid username or password", "no hint"
    failures = env.as_("admin").data(
        """query($a: String) { auditEvents(filter: {action: "login-failed", actor: $a}) {
             edges { node { details } } } }""",
        a=f"user:{uid}",
    )["auditEvents"]["edges"]
    locked = [e["node"]["details"]["locked"] for e in failures]
    assert locked == [True, False, False, False], "newest first: the right password, locked"
    time.sleep(max(0.0, LOCKOUT_S - (time.monotonic() - locked_at)) + 0.3)
    session = env.login("locky", "locky-password-123")
    assert session["token"]


def test_failures_below_the_threshold_are_forgiven_by_a_success(env: AuthEnv) -> None:
    env.new_user("almost", ["RESEARCHER"])
    anon = env.as_(None)
    for _ in range(2):
        for _ in range(LOCKOUT_FAILURES - 1):
            anon.refused(LOGIN, "UNAUTHENTICATED", u="almost", p="wrong-password-000")
        assert env.login("almost", "almost-password-123")["token"]


def test_logout_ends_the_session(env: AuthEnv) -> None:
    token = env.login("researcher", "researcher-password-123")["token"]
    api = env.with_token(token)
    assert api.data(ME)["me"]["username"] == "researcher"  # now in the verification cache
    assert api.data("mutation { logout }")["logout"] is True
    response = api.post(ME)
    assert response.status_code == 401 and _code(response.json()) == {"UNAUTHENTICATED"}


# -- 4. API tokens ---------------------------------------------------------------------------

CREATE_TOKEN = """mutation($n: String!, $d: Int) {
  createApiToken(name: $n, expiresInDays: $d) {
    token apiToken { id name prefix createdAt expiresAt lastUsedAt }
  }
}"""
TOKENS = "{ apiTokens { id name prefix createdAt expiresAt lastUsedAt } }"


def test_api_token_shown_once_listed_by_prefix_used_then_revoked(env: AuthEnv) -> None:
    radiologist = env.as_("radiologist")
    made = radiologist.data(CREATE_TOKEN, n="nightly script", d=30)["createApiToken"]
    token, row = made["token"], made["apiToken"]
    assert token.startswith("pgt_") and len(token) > 40
    assert token.startswith(row["prefix"]) and len(row["prefix"]) < len(token) - 20
    assert row["name"] == "nightly script" and row["lastUsedAt"] is None
    assert row["expiresAt"] is not None

    listed = radiologist.gql(TOKENS)
    assert [t["id"] for t in listed["data"]["apiTokens"]] == [row["id"]]
    assert listed["data"]["apiTokens"][0]["prefix"] == row["prefix"]
    assert token not in str(listed) and token[len(row["prefix"]) :] not in str(listed)
    assert env.as_("researcher").data(TOKENS)["apiTokens"] == [], "only the caller's own"

    script = env.with_token(token)
    assert script.data(ME)["me"]["username"] == "radiologist"
    assert script.data(PATIENTS_Q)["patients"]["totalCount"] == len(env.truth.patients)
    used = radiologist.data(TOKENS)["apiTokens"][0]["lastUsedAt"]
    assert used is not None, "last use recorded"

    # others may neither list nor revoke it; the admin may list it
    rid = env.user_ids["radiologist"]
    env.as_("researcher").refused("query($u: ID) { apiTokens(userId: $u) { id } }", u=rid)
    admin_view = env.as_("admin").data("query($u: ID) { apiTokens(userId: $u) { id } }", u=rid)
    assert [t["id"] for t in admin_view["apiTokens"]] == [row["id"]]
    revoke = "mutation($id: ID!) { revokeApiToken(id: $id) }"
    env.as_("researcher").refused(revoke, id=row["id"])
    assert script.data(ME)["me"]["username"] == "radiologist", "still valid after a refusal"

    assert radiologist.data(revoke, id=row["id"])["revokeApiToken"] is True
    response = script.post(ME)  # cached a moment ago: revoking clears the cache at once
    assert response.status_code == 401 and _code(response.json()) == {"UNAUTHENTICATED"}
    assert radiologist.data(TOKENS)["apiTokens"] == []
    assert radiologist.data(revoke, id=row["id"])["revokeApiToken"] is False


def test_a_revocation_reaches_another_gateway_process_within_a_second(env: AuthEnv) -> None:
    """A second gateway (its own app, its own cache of verified tokens) that used a token a
    moment ago refuses it about a second after another gateway revoked it, not after the
    cache's 30 s."""
    radiologist = env.as_("radiologist")
    made = radiologist.data(CREATE_TOKEN, n="two gateways", d=1)["createApiToken"]
    with TestClient(create_app(env.settings)) as other:
        there = Api(other, made["token"])
        assert there.data(ME)["me"]["username"] == "radiologist"  # verified, now cached there
        revoke = "mutation($id: ID!) { revokeApiToken(id: $id) }"
        assert radiologist.data(revoke, id=made["apiToken"]["id"])["revokeApiToken"] is True
        time.sleep(CHECK_EVERY_S + 0.2)
        response = there.post(ME)
        assert response.status_code == 401 and _code(response.json()) == {"UNAUTHENTICATED"}


def test_api_token_input_is_checked(env: AuthEnv) -> None:
    env.as_("radiologist").refused(CREATE_TOKEN, "BAD_USER_INPUT", n="  ", d=None)
    env.as_("radiologist").refused(CREATE_TOKEN, "BAD_USER_INPUT", n="x", d=0)


# -- 7. users and groups ---------------------------------------------------------------------

CREATE_USER = """mutation($i: UserInput!) {
  createUser(input: $i) { id username roles sources active groups { id name } }
}"""
UPDATE_USER = """mutation($id: ID!, $p: UserPatch!) {
  updateUser(id: $id, patch: $p) { id username roles sources active groups { id name } }
}"""
CREATE_GROUP = """mutation($i: GroupInput!) {
  createGroup(input: $i) { id name roles sources members { username } }
}"""
USERS = "{ users { id username roles active sources groups { name } } }"


def test_usernames_are_unique_whatever_their_case(env: AuthEnv) -> None:
    admin = env.as_("admin")
    made = admin.data(
        CREATE_USER, i={"username": "Dana", "roles": ["RADIOLOGIST"], "password": "dana-pw-12345"}
    )["createUser"]
    assert made["username"] == "Dana" and made["roles"] == ["RADIOLOGIST"]
    assert made["active"] is True and made["sources"] is None
    for clash in ("dana", "DANA", " Dana "):
        body = admin.refused(
            CREATE_USER, "BAD_USER_INPUT", i={"username": clash, "roles": ["RESEARCHER"]}
        )
        assert "taken" in body["errors"][0]["message"]
    assert env.login("dAnA", "dana-pw-12345")["user"]["id"] == made["id"]
    names = [u["username"] for u in admin.data(USERS)["users"]]
    assert names.count("Dana") == 1 and "dana" not in names


def test_user_administration_is_refused_to_non_admins(env: AuthEnv) -> None:
    for who in ("radiologist", "researcher"):
        api = env.as_(who)
        api.refused(CREATE_USER, i={"username": f"by-{who}", "roles": ["ADMIN"]})
        api.refused(UPDATE_USER, id=env.user_ids[who], p={"roles": ["ADMIN"]})
        api.refused("mutation($id: ID!) { deleteUser(id: $id) }", id=env.user_ids["admin"])
        api.refused(CREATE_GROUP, i={"name": f"g-{who}", "roles": ["ADMIN"]})
        api.refused(
            'mutation($id: ID!) { setPassword(id: $id, password: "long-enough-pw") }',
            id=env.user_ids["admin"],
        )
    names = [u["username"] for u in env.as_("admin").data(USERS)["users"]]
    assert not any(n.startswith("by-") for n in names)
    assert env.login("admin", "admin-password-123")["token"], "admin's password unchanged"


def test_set_password_for_oneself_ends_other_sessions(env: AuthEnv) -> None:
    uid, token = env.new_user("changer", ["RESEARCHER"])
    api = env.with_token(token)
    query = "mutation($id: ID!, $p: String!) { setPassword(id: $id, password: $p) }"
    api.refused(query, "BAD_USER_INPUT", id=uid, p="short")
    assert api.data(query, id=uid, p="a-new-password-456")["setPassword"] is True
    assert api.post(ME).status_code == 401, "sessions end with a new password"
    env.as_(None).refused(LOGIN, "UNAUTHENTICATED", u="changer", p="changer-password-123")
    assert env.login("changer", "a-new-password-456")["token"]


def test_set_password_for_oneself_needs_a_recent_login(env: AuthEnv) -> None:
    """A stolen older session or an API token cannot change its user's password."""
    uid, token = env.new_user("stale", ["RADIOLOGIST"])
    api = env.with_token(token)
    query = "mutation($id: ID!, $p: String!) { setPassword(id: $id, password: $p) }"
    script = api.data(CREATE_TOKEN, n="script", d=1)["createApiToken"]["token"]
    body = env.with_token(script).refused(query, id=uid, p="a-new-password-789")
    assert "log in again" in body["errors"][0]["message"]

    async def age(runtime: Any) -> None:  # the session began an hour ago
        async with runtime.sessions() as session, session.begin():
            await session.execute(
                update(Credential)
                .where(Credential.user_id == uid, Credential.kind == "session")
                .values(created_at=utcnow() - timedelta(hours=1))
            )

    env.run(age)
    api.refused(query, id=uid, p="a-new-password-789")
    fresh = env.login("stale", "stale-password-123")["token"]
    assert env.with_token(fresh).data(query, id=uid, p="a-new-password-789")["setPassword"]
    assert env.login("stale", "a-new-password-789")["token"]


def test_a_user_limited_to_one_source_queries_only_that_one(env: AuthEnv) -> None:
    uid, token = env.new_user("orthanc-only", ["RADIOLOGIST"], sources=["orthanc"])
    api = env.with_token(token)
    assert api.data(ME)["me"]["sources"] == ["orthanc"]
    listed = "{ sources { id } }"
    assert [s["id"] for s in api.data(listed)["sources"]] == ["orthanc"], "only its own"
    everyone = [s["id"] for s in env.as_("admin").data(listed)["sources"]]
    assert len(everyone) > 1 and "orthanc" in everyone
    page = api.data(SOURCE_RESULTS)["patients"]
    status = {r["source"]["id"]: r["status"] for r in page["sourceResults"]}
    assert status == {"orthanc": "OK", "dcm4chee": "SKIPPED", "legacy": "SKIPPED"}
    in_orthanc = sorted(p.patient_id for p in env.truth.patients if "orthanc" in p.sources)
    assert sorted(e["node"]["patientId"] for e in page["edges"]) == in_orthanc
    assert {s["id"] for e in page["edges"] for s in e["node"]["presentIn"]} == {"orthanc"}
    # asking for a source outside the limit skips it as well
    asked = api.data(SOURCE_RESULTS, f={"sources": ["dcm4chee", "orthanc"]})["patients"]
    status = {r["source"]["id"]: r["status"] for r in asked["sourceResults"]}
    assert status["dcm4chee"] == "SKIPPED" and status["orthanc"] == "OK"
    # jobs touching another source are refused before anything is queued
    sync = "mutation($i: SyncInput!) { syncStudies(input: $i) { id } }"
    study = env.truth.studies[0].study_uid
    body = {"from": "dcm4chee", "to": "orthanc", "studyInstanceUids": [study], "dryRun": True}
    api.refused(sync, i=body)

    # the admin widens the limit: effective at once, no new login
    updated = env.as_("admin").data(UPDATE_USER, id=uid, p={"sources": ["orthanc", "dcm4chee"]})
    assert updated["updateUser"]["sources"] == ["dcm4chee", "orthanc"]
    page = api.data(SOURCE_RESULTS)["patients"]
    status = {r["source"]["id"]: r["status"] for r in page["sourceResults"]}
    assert status == {"orthanc": "OK", "dcm4chee": "OK", "legacy": "SKIPPED"}
    # a patch without `sources` leaves the limit; `sources: null` lifts it
    kept = env.as_("admin").data(UPDATE_USER, id=uid, p={"displayName": "Orthanc and DCM4CHEE"})
    assert kept["updateUser"]["sources"] == ["dcm4chee", "orthanc"]
    lifted = env.as_("admin").data(UPDATE_USER, id=uid, p={"sources": None})
    assert lifted["updateUser"]["sources"] is None
    assert [s["id"] for s in api.data(listed)["sources"]] == everyone
    page = api.data(SOURCE_RESULTS)["patients"]
    assert {r["status"] for r in page["sourceResults"]} == {"OK"}


def test_unknown_sources_and_groups_are_refused(env: AuthEnv) -> None:
    admin = env.as_("admin")
    admin.refused(
        CREATE_USER, "BAD_USER_INPUT", i={"username": "u1", "roles": [], "sources": ["nope"]}
    )
    admin.refused(
        CREATE_USER, "BAD_USER_INPUT", i={"username": "u2", "roles": [], "groups": ["nope"]}
    )
    names = [u["username"] for u in admin.data(USERS)["users"]]
    assert "u1" not in names and "u2" not in names


def test_roles_and_limits_come_from_groups_too(env: AuthEnv) -> None:
    admin = env.as_("admin")
    uid, token = env.new_user("grouped", ["RESEARCHER"])
    api = env.with_token(token)
    api.refused("{ users { id } }")
    group = admin.data(
        CREATE_GROUP, i={"name": "Auditors", "roles": ["ADMIN"], "sources": ["legacy"]}
    )["createGroup"]
    admin.refused(CREATE_GROUP, "BAD_USER_INPUT", i={"name": "auditors", "roles": []})
    joined = admin.data(UPDATE_USER, id=uid, p={"groups": [group["id"]]})["updateUser"]
    assert [g["name"] for g in joined["groups"]] == ["Auditors"]
    assert joined["roles"] == ["RESEARCHER"], "own roles stay as they are"
    assert "grouped" in [u["username"] for u in api.data("{ users { username } }")["users"]]
    members = admin.data("{ groups { name members { username } } }")["groups"]
    assert {"name": "Auditors", "members": [{"username": "grouped"}]} in members
    # the group's sources add to the user's own (none: every source) -> still every source
    status = {
        r["source"]["id"]: r["status"]
        for r in api.data("{ patients(first: 1) { sourceResults { source { id } status } } }")[
            "patients"
        ]["sourceResults"]
    }
    assert set(status.values()) == {"OK"}
    left = admin.data(UPDATE_USER, id=uid, p={"groups": []})["updateUser"]
    assert left["groups"] == []
    api.refused("{ users { id } }")
    assert admin.data("mutation($id: ID!) { deleteGroup(id: $id) }", id=group["id"])["deleteGroup"]


def test_deactivated_and_deleted_users_are_out(env: AuthEnv) -> None:
    admin = env.as_("admin")
    uid, token = env.new_user("leaver", ["RADIOLOGIST"])
    api = env.with_token(token)
    assert api.data(ME)["me"]["active"] is True
    off = admin.data(UPDATE_USER, id=uid, p={"active": False})["updateUser"]
    assert off["active"] is False
    assert api.post(ME).status_code == 401, "a deactivated user's sessions end"
    env.as_(None).refused(LOGIN, "UNAUTHENTICATED", u="leaver", p="leaver-password-123")
    admin.data(UPDATE_USER, id=uid, p={"active": True})
    token = env.login("leaver", "leaver-password-123")["token"]
    assert admin.data("mutation($id: ID!) { deleteUser(id: $id) }", id=uid)["deleteUser"] is True
    assert env.with_token(token).post(ME).status_code == 401
    env.as_(None).refused(LOGIN, "UNAUTHENTICATED", u="leaver", p="leaver-password-123")
    users = {u["username"]: u for u in admin.data(USERS)["users"]}
    assert users["leaver"]["active"] is False, "deleting deactivates and keeps the user"


def test_the_last_active_admin_cannot_be_removed(env: AuthEnv) -> None:
    admin = env.as_("admin")
    admins = [u for u in admin.data(USERS)["users"] if "ADMIN" in u["roles"] and u["active"]]
    assert [u["username"] for u in admins] == ["admin"], "precondition: one admin"
    aid = env.user_ids["admin"]
    for patch in ({"roles": ["RADIOLOGIST"]}, {"roles": []}, {"active": False}):
        body = admin.refused(UPDATE_USER, "BAD_USER_INPUT", id=aid, p=patch)
        assert "last active admin" in body["errors"][0]["message"]
    admin.refused("mutation($id: ID!) { deleteUser(id: $id) }", "BAD_USER_INPUT", id=aid)
    me = admin.data(ME)["me"]
    assert me["roles"] == ["ADMIN"] and me["active"] is True
    # with a second admin, either one may go: the rule is about the last one
    second, _ = env.new_user("second-admin", ["ADMIN"])
    gone = admin.data(UPDATE_USER, id=second, p={"active": False})["updateUser"]
    assert gone["active"] is False
    admin.refused(UPDATE_USER, "BAD_USER_INPUT", id=aid, p={"roles": ["RESEARCHER"]})
