"""The federated read API on the seeded three-archive stack, checked against the seeder's truth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.core.settings import Settings
from gateway.devstack.seed import GroundTruth
from gateway.server.app import create_app

ORDER = ["orthanc", "dcm4chee", "legacy"]


@pytest.fixture(scope="module")
def client(settings: Settings, truth: GroundTruth) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def gql(client: TestClient, query: str, **variables: Any) -> dict[str, Any]:
    r = client.post("/graphql", json={"query": query, "variables": variables})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "errors" not in body, body["errors"]
    return body["data"]  # type: ignore[no-any-return]


def ordered(sources: list[str]) -> list[str]:
    return [s for s in ORDER if s in sources]


PATIENTS = """
query($f: PatientFilter, $first: Int, $after: String) {
  patients(filter: $f, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    sourceResults { source { id } status count error latencyMs }
    edges { cursor node { patientId name birthDate sex
      presentIn { id } missingFrom { id } conflicts { field values { source { id } value } } } }
  }
}"""


def test_every_patient_with_presence(client: TestClient, truth: GroundTruth) -> None:
    data = gql(client, PATIENTS, first=500)["patients"]
    assert [r["status"] for r in data["sourceResults"]] == ["OK", "OK", "OK"]
    assert data["totalCount"] == len(truth.patients)
    by_id = {e["node"]["patientId"]: e["node"] for e in data["edges"]}
    for p in truth.patients:
        node = by_id[p.patient_id]
        assert [s["id"] for s in node["presentIn"]] == ordered(p.sources), p.patient_id
        assert [s["id"] for s in node["missingFrom"]] == [s for s in ORDER if s not in p.sources]
        assert node["birthDate"] == p.birth_date and node["sex"] == p.sex
        distinct = {p.names[s] for s in p.sources}
        name_conflicts = [c for c in node["conflicts"] if c["field"] == "name"]
        assert bool(name_conflicts) == (len(distinct) > 1), p.patient_id
        if name_conflicts:
            values = {v["source"]["id"]: v["value"] for v in name_conflicts[0]["values"]}
            assert values == {s: p.names[s] for s in p.sources}


def test_paging_is_stable_and_complete(client: TestClient, truth: GroundTruth) -> None:
    seen: list[str] = []
    after = None
    while True:
        data = gql(client, PATIENTS, first=7, after=after)["patients"]
        seen += [e["node"]["patientId"] for e in data["edges"]]
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert seen == sorted(p.patient_id for p in truth.patients)


def test_non_ascii_and_case_insensitive_name_search(client: TestClient, truth: GroundTruth) -> None:
    target = next(p for p in truth.patients if p.specific_character_set == "ISO_IR 192")
    family = target.name.split("^")[0]
    pattern = family[:3].lower() + "*"
    expected = {
        p.patient_id
        for p in truth.patients
        for s in p.sources
        if p.names[s].split("^")[0].lower().startswith(family[:3].lower())
    }
    data = gql(client, PATIENTS, f={"name": pattern}, first=100)["patients"]
    found = {e["node"]["patientId"] for e in data["edges"]}
    assert target.patient_id in found
    assert found == expected


STUDY = """
query($uid: String!) {
  study(studyInstanceUid: $uid) {
    studyInstanceUid patientId modalities presentIn { id } missingFrom { id }
    counts { source { id } series instances }
    conflicts { field values { source { id } value } }
    series { seriesInstanceUid presentIn { id } missingFrom { id }
      instances { sopInstanceUid presentIn { id } missingFrom { id } } }
  }
}"""


def test_study_presence_counts_and_instances(client: TestClient, truth: GroundTruth) -> None:
    for st in truth.studies:
        study = gql(client, STUDY, uid=st.study_uid)["study"]
        assert [s["id"] for s in study["presentIn"]] == ordered(st.sources)
        for c in study["counts"]:
            src = c["source"]["id"]
            if c["instances"] is not None:
                assert c["instances"] == st.instance_counts[src], (st.study_uid, src)
            if c["series"] is not None:
                assert c["series"] == st.series_counts[src]
        held = {
            (i["sopInstanceUid"], s["id"])
            for se in study["series"]
            for i in se["instances"]
            for s in i["presentIn"]
        }
        expected = {
            (uid, src)
            for src, by_series in st.instances.items()
            for uids in by_series.values()
            for uid in uids
        }
        assert held == expected, st.study_uid
        fields = {c["field"] for c in study["conflicts"]}
        if "StudyDescription" in st.conflicts:
            assert "description" in fields


COMPARE = """
query($uid: String!) {
  compareStudy(studyInstanceUid: $uid) {
    inSync sources { source { id } present status }
    missing { level uid missingFrom { id } presentIn { id } }
    conflicts { field }
  }
}"""


def test_compare_study_lists_missing_instances(client: TestClient, truth: GroundTruth) -> None:
    with_missing = [s for s in truth.studies if any(s.missing.values())]
    assert with_missing, "the seeder must leave some instances missing"
    for st in with_missing:
        cmp = gql(client, COMPARE, uid=st.study_uid)["compareStudy"]
        assert cmp["inSync"] is False
        instances = {
            (m["uid"], s["id"])
            for m in cmp["missing"]
            if m["level"] == "INSTANCE"
            for s in m["missingFrom"]
        }
        series = {
            (m["uid"], s["id"])
            for m in cmp["missing"]
            if m["level"] == "SERIES"
            for s in m["missingFrom"]
        }
        for src, uids in st.missing.items():
            for uid in uids:
                series_uid = next(se.series_uid for se in st.series if uid in se.instance_uids)
                assert (uid, src) in instances or (series_uid, src) in series


def test_compare_in_sync_study(client: TestClient, truth: GroundTruth) -> None:
    clean = [
        s
        for s in truth.studies
        if len(s.sources) == 3 and not any(s.missing.values()) and not s.conflicts
    ] or [s for s in truth.studies if not any(s.missing.values()) and not s.conflicts]
    st = clean[0]
    cmp = gql(client, COMPARE, uid=st.study_uid)["compareStudy"]
    if len(st.sources) == 3:
        assert cmp["inSync"] is True, cmp
    assert cmp["missing"] == [] or all(m["level"] == "STUDY" for m in cmp["missing"])


def test_page_size_cap_is_a_coded_error(client: TestClient) -> None:
    r = client.post("/graphql", json={"query": "{ patients(first: 501) { totalCount } }"})
    err = r.json()["errors"][0]
    assert err["extensions"]["code"] == "PAGE_SIZE_EXCEEDED"


def test_page_of_patients_with_studies_costs_few_requests(
    client: TestClient, truth: GroundTruth
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    before = {i: s.stats.calls for i, s in runtime.sources.items()}
    query = """{ patients(first: 50) { edges { node { patientId
        studies { studyInstanceUid counts { source { id } series instances } } } } } }"""
    data = gql(client, query)
    assert len(data["patients"]["edges"]) == len(truth.patients)
    after = {i: s.stats.calls for i, s in runtime.sources.items()}
    for i in before:
        assert after[i] - before[i] <= 3, (i, after[i] - before[i])


def test_identity_goes_through_one_choke_point(
    client: TestClient, truth: GroundTruth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refusing every identity field in `privacy.may_see` refuses it in every query: each
    identity field answers FORBIDDEN, and no identity value is anywhere in the answer."""
    from resolvers import privacy

    monkeypatch.setattr(privacy, "may_see", lambda caller, field: False)
    fields = {
        "patients": "patients(first: 500) { edges { node { %s } } }",
        "studies": "studies(first: 500) { edges { node { %s } } }",
        "patient studies": "patients(first: 500) { edges { node { studies { %s } } } }",
    }
    asked = {
        "patients": ["patientId", "issuerOfPatientId", "name", "birthDate", "sex"],
        "studies": ["patientId", "patientName"],
        "patient studies": ["patientId", "patientName"],
    }
    text = ""
    for where, shape in fields.items():
        for field in asked[where]:
            r = client.post("/graphql", json={"query": "{ %s }" % (shape % field)})
            body = r.json()
            codes = {e["extensions"]["code"] for e in body.get("errors", [])}
            assert codes == {"FORBIDDEN"}, (where, field, r.text)
            text += r.text
    for p in truth.patients:
        assert f'"{p.patient_id}"' not in text
        assert p.birth_date not in text
        for name in p.names.values():
            assert name.split("^")[0] not in text


def test_aliased_pages_with_other_sources_keep_their_own_studies(
    client: TestClient, truth: GroundTruth
) -> None:
    fields = "edges { node { patientId studies { studyInstanceUid presentIn { id } } } }"
    query = f"""{{ only: patients(first: 500, filter: {{sources: ["orthanc"]}}) {{ {fields} }}
                  every: patients(first: 500) {{ {fields} }} }}"""
    data = gql(client, query)
    only = [s for e in data["only"]["edges"] for s in e["node"]["studies"]]
    assert only and all([p["id"] for p in s["presentIn"]] == ["orthanc"] for s in only)
    every = {
        s["studyInstanceUid"]: [p["id"] for p in s["presentIn"]]
        for e in data["every"]["edges"]
        for s in e["node"]["studies"]
    }
    assert every == {st.study_uid: ordered(st.sources) for st in truth.studies}
