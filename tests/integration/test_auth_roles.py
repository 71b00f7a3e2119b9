"""Every row of the roles table (gateway/auth/policy.py), for admin, radiologist and
researcher, through the API of a gateway in `required` mode against the real stack.

No worker runs here: jobs stay QUEUED, which is all the policy needs (it decides before
anything is queued) and keeps jobs still for the visibility checks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from gateway.db.models import AuditEvent
from gateway.deid.mapping import load_cipher, save_mapping
from gateway.runtime import Runtime
from tests.auth_support import Api, AuthEnv, auth_env, leaked

IDENTITY = "{ patients(first: 50) { totalCount edges { node { name patientId } } } }"
NO_IDENTITY = """{ patients(first: 50) { totalCount
  edges { node { presentIn { id } missingFrom { id }
    studies { studyInstanceUid studyDate modalities description presentIn { id } } } }
  sourceResults { source { id } status } } }"""
SYNC = "mutation($i: SyncInput!) { syncStudies(input: $i) { id kind status owner } }"
ANONYMIZE = "mutation($i: AnonymizeInput!) { anonymizeStudy(input: $i) { id kind status owner } }"
RTSTRUCT = "mutation($i: RtStructInput!) { processRtStruct(input: $i) { id kind status owner } }"
JOB = "query($id: ID!) { job(id: $id) { id status owner } }"
JOBS = "{ jobs(first: 500) { totalCount edges { node { id owner } } } }"
CANCEL = "mutation($id: ID!) { cancelJob(id: $id) { id status } }"
RETRY = "mutation($id: ID!) { retryJob(id: $id) { id status } }"
REIDENTIFY = """mutation($p: String!, $s: String!, $r: String!) {
  reidentify(project: $p, pseudonym: $s, reason: $r) { project pseudonym patientId patientName }
}"""
UID = "1.2.826.0.1.3680043.8.498.4242"  # a valid UID no archive holds: jobs only queue


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthEnv]:
    """The module's required-auth stack, seeded with a few demo patients."""
    yield from auth_env(tmp_path_factory)


def _jobs(api: Api) -> dict[str, Any]:
    return {e["node"]["id"]: e["node"] for e in api.data(JOBS)["jobs"]["edges"]}


def _study(env: AuthEnv, k: int = 0) -> str:
    return env.truth.studies[k].study_uid


# -- identity of clinical data ---------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin", "radiologist"])
def test_clinical_roles_see_identity(env: AuthEnv, who: str) -> None:
    page = env.as_(who).data(IDENTITY)["patients"]
    ids = sorted(e["node"]["patientId"] for e in page["edges"])
    assert ids == sorted(p.patient_id for p in env.truth.patients)
    names = {e["node"]["patientId"]: e["node"]["name"] for e in page["edges"]}
    for p in env.truth.patients:
        assert names[p.patient_id] in p.names.values()


def test_researcher_gets_forbidden_and_no_identity(env: AuthEnv) -> None:
    response = env.as_("researcher").post(IDENTITY)
    assert response.status_code == 200
    body = response.json()
    codes = {e["extensions"]["code"] for e in body["errors"]}
    assert codes == {"FORBIDDEN"}
    assert {e["path"][-1] for e in body["errors"]} <= {"name", "patientId"}
    assert body["data"] is None or body["data"]["patients"] is None
    assert leaked(response.text, env.truth) == []


def test_researcher_still_gets_what_is_not_identity(env: AuthEnv) -> None:
    researcher = env.as_("researcher").data(NO_IDENTITY)
    admin = env.as_("admin").data(NO_IDENTITY)
    assert researcher == admin
    assert researcher["patients"]["totalCount"] == len(env.truth.patients)


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ('{ patients(filter: {name: "BERGER*"}) { totalCount } }', {}),
        ('{ patients(filter: {birthDate: "19471204"}) { totalCount } }', {}),
        ("query($p: String!) { patient(patientId: $p) { presentIn { id } } }", {"p": "MRN2867825"}),
        ("query($p: String!) { comparePatient(patientId: $p) { inSync } }", {"p": "MRN2867825"}),
        ("query($p: String) { studies(filter: {patientId: $p}) { totalCount } }", {"p": "MRN*"}),
        ('{ studies(filter: {patientName: "M*"}) { totalCount } }', {}),
        ('{ studies(filter: {accessionNumber: "*"}) { totalCount } }', {}),
    ],
)
def test_researcher_cannot_search_by_identity(
    env: AuthEnv, query: str, variables: dict[str, Any]
) -> None:
    """The answer would say whether such a patient exists."""
    body = env.as_("researcher").refused(query, **variables)
    assert body["data"] is None or all(v is None for v in body["data"].values())
    assert env.as_("radiologist").data(query, **variables)


# -- syncStudies -------------------------------------------------------------------------------


def test_sync_refused_to_researchers(env: AuthEnv) -> None:
    before = _jobs(env.as_("admin"))
    body = {"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": [_study(env)]}
    env.as_("researcher").refused(SYNC, i=body)
    assert _jobs(env.as_("admin")) == before, "nothing queued"


def test_sync_clinical_to_clinical_for_radiologists(env: AuthEnv) -> None:
    body = {"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": [_study(env)]}
    job = env.as_("radiologist").data(SYNC, i=body)["syncStudies"]
    assert job["kind"] == "SYNC" and job["status"] == "QUEUED"
    assert job["owner"] == env.user_ids["radiologist"]


def test_sync_with_a_research_archive_is_for_admins(env: AuthEnv) -> None:
    before = _jobs(env.as_("admin"))
    research = {"from": "research", "to": "orthanc", "studyInstanceUids": [UID]}
    body = env.as_("radiologist").refused(SYNC, i=research)
    assert "research" in body["errors"][0]["message"]
    env.as_("researcher").refused(SYNC, i=research)
    assert _jobs(env.as_("admin")) == before, "nothing queued"
    job = env.as_("admin").data(SYNC, i=research)["syncStudies"]
    assert job["status"] == "QUEUED" and job["owner"] == env.user_ids["admin"]


# -- anonymizeStudy -----------------------------------------------------------------------------


def _anon(env: AuthEnv, destination: str, clinical: bool = False) -> dict[str, Any]:
    return {
        "source": "orthanc",
        "studyInstanceUid": _study(env, 2),
        "destination": destination,
        "project": "ROLES",
        "allowClinicalDestination": clinical,
    }


def test_anonymize_refused_to_researchers(env: AuthEnv) -> None:
    env.as_("researcher").refused(ANONYMIZE, i=_anon(env, "research"))


def test_anonymize_into_research_for_radiologists(env: AuthEnv) -> None:
    job = env.as_("radiologist").data(ANONYMIZE, i=_anon(env, "research"))["anonymizeStudy"]
    assert job["status"] == "QUEUED" and job["owner"] == env.user_ids["radiologist"]


def test_anonymize_destination_must_be_research_unless_an_admin_overrides(env: AuthEnv) -> None:
    radiologist, admin = env.as_("radiologist"), env.as_("admin")
    before = _jobs(admin)
    radiologist.refused(ANONYMIZE, "BAD_USER_INPUT", i=_anon(env, "dcm4chee"))
    admin.refused(ANONYMIZE, "BAD_USER_INPUT", i=_anon(env, "dcm4chee"))
    radiologist.refused(ANONYMIZE, "FORBIDDEN", i=_anon(env, "dcm4chee", clinical=True))
    admin.refused(ANONYMIZE, "BAD_USER_INPUT", i=_anon(env, "orthanc", clinical=True))
    assert _jobs(admin) == before, "nothing queued"
    job = admin.data(ANONYMIZE, i=_anon(env, "dcm4chee", clinical=True))["anonymizeStudy"]
    assert job["status"] == "QUEUED" and job["owner"] == env.user_ids["admin"]

    async def submits(runtime: Runtime) -> list[AuditEvent]:
        async with runtime.sessions() as session:
            rows = await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "job-submit", AuditEvent.object_ref == job["id"]
                )
            )
            return list(rows)

    events = _wait_for(lambda: env.run(submits))
    assert events[0].detail == {"kind": "ANONYMIZE", "allowClinicalDestination": True}
    assert events[0].actor == f"user:{env.user_ids['admin']}"


# -- processRtStruct -----------------------------------------------------------------------------


def test_rtstruct_for_researchers_on_research_archives_only(env: AuthEnv) -> None:
    clinical = {"source": "orthanc", "studyInstanceUid": _study(env)}
    env.as_("researcher").refused(RTSTRUCT, i=clinical)
    job = env.as_("researcher").data(RTSTRUCT, i={"source": "research", "studyInstanceUid": UID})
    assert job["processRtStruct"]["owner"] == env.user_ids["researcher"]
    assert env.as_("radiologist").data(RTSTRUCT, i=clinical)["processRtStruct"]["status"]
    assert env.as_("admin").data(RTSTRUCT, i=clinical)["processRtStruct"]["status"]


# -- who sees and acts on which job --------------------------------------------------------------


def test_a_radiologist_neither_sees_nor_touches_anothers_job(env: AuthEnv) -> None:
    mine = env.as_("radiologist")
    body = {"from": "dcm4chee", "to": "orthanc", "studyInstanceUids": [_study(env, 1)]}
    job = mine.data(SYNC, i=body)["syncStudies"]
    _, token = env.new_user("radiologist-2", ["RADIOLOGIST"])
    other = env.with_token(token)

    assert other.data(JOB, id=job["id"])["job"] is None, "as unknown as no job at all"
    assert job["id"] not in _jobs(other)
    other.refused(CANCEL, id=job["id"])
    assert mine.data(JOB, id=job["id"])["job"]["status"] == "QUEUED", "not cancelled"
    # the same request by the other radiologist is a job of their own
    theirs = other.data(SYNC, i=body)["syncStudies"]
    assert theirs["id"] != job["id"] and list(_jobs(other)) == [theirs["id"]]

    assert mine.data(CANCEL, id=job["id"])["cancelJob"]["status"] == "CANCELLED"
    other.refused(RETRY, id=job["id"])
    assert mine.data(JOB, id=job["id"])["job"]["status"] == "CANCELLED", "not retried"
    assert mine.data(RETRY, id=job["id"])["retryJob"]["status"] == "QUEUED"

    admin = env.as_("admin")
    assert admin.data(JOB, id=job["id"])["job"]["owner"] == env.user_ids["radiologist"]
    everything = _jobs(admin)
    assert job["id"] in everything and theirs["id"] in everything
    assert admin.data(CANCEL, id=theirs["id"])["cancelJob"]["status"] == "CANCELLED"


def test_each_non_admin_lists_only_their_own_jobs(env: AuthEnv) -> None:
    admin = _jobs(env.as_("admin"))
    owners = {j["owner"] for j in admin.values()}
    assert {env.user_ids["admin"], env.user_ids["radiologist"]} <= owners
    for who in ("radiologist", "researcher"):
        seen = _jobs(env.as_(who))
        assert seen, who
        assert {j["owner"] for j in seen.values()} == {env.user_ids[who]}
        mine = {i for i, j in admin.items() if j["owner"] == env.user_ids[who]}
        assert set(seen) == mine
        total = env.as_(who).data(JOBS)["jobs"]["totalCount"]
        assert total == len(mine), "the count says nothing of others' jobs"


# -- administration ------------------------------------------------------------------------------

ADMIN_ONLY = [
    "{ users { id username } }",
    "{ groups { id name } }",
    "{ auditEvents(first: 5) { totalCount edges { node { id action } } } }",
]


@pytest.mark.parametrize("query", ADMIN_ONLY)
def test_users_groups_and_the_audit_log_are_for_admins(env: AuthEnv, query: str) -> None:
    for who in ("radiologist", "researcher"):
        body = env.as_(who).refused(query)
        assert body["data"] is None
    assert env.as_("admin").data(query)


def test_reidentify_is_for_admins_with_a_reason(env: AuthEnv) -> None:
    patient = env.truth.patients[0]

    async def keep(runtime: Runtime) -> None:
        cipher = load_cipher(runtime.settings.mapping_key)
        identity = {"PatientID": patient.patient_id, "PatientName": patient.name}
        await save_mapping(runtime.sessions, cipher, "TRIAL9", "PSEUDO-0001", "2.25.1", identity)

    env.run(keep)
    args = {"p": "TRIAL9", "s": "PSEUDO-0001", "r": "incidental finding, clinical follow-up"}
    for who in ("radiologist", "researcher"):
        body = env.as_(who).refused(REIDENTIFY, **args)
        assert leaked(str(body), env.truth) == []
    env.as_("admin").refused(REIDENTIFY, "BAD_USER_INPUT", **{**args, "r": "  "})
    env.as_("admin").refused(REIDENTIFY, "BAD_USER_INPUT", **{**args, "s": "PSEUDO-9999"})
    found = env.as_("admin").data(REIDENTIFY, **args)["reidentify"]
    assert found == {
        "project": "TRIAL9",
        "pseudonym": "PSEUDO-0001",
        "patientId": patient.patient_id,
        "patientName": patient.name,
    }

    async def trail(runtime: Runtime) -> list[AuditEvent]:
        async with runtime.sessions() as session:
            rows = await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "reidentify").order_by(AuditEvent.id)
            )
            return list(rows)

    events = _wait_for(lambda: [e for e in env.run(trail) if e.outcome == "ok"])
    ok = events[-1]
    assert ok.actor == f"user:{env.user_ids['admin']}"
    assert ok.detail is not None and ok.detail["reason"] == args["r"]
    assert leaked(repr((ok.detail, ok.object_ref)), env.truth) == []
    assert "PSEUDO-0001" not in repr((ok.detail, ok.object_ref)), "the pseudonym is opaque too"
    refused = [e for e in env.run(trail) if e.outcome == "refused"]
    assert {e.actor for e in refused} == {
        f"user:{env.user_ids['radiologist']}",
        f"user:{env.user_ids['researcher']}",
    }


def _wait_for(probe: Any, timeout: float = 10.0) -> Any:
    """Poll `probe()` until it returns something truthy (audit events are written behind)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found or time.monotonic() > deadline:
            assert found, "nothing appeared in time"
            return found
        time.sleep(0.2)
