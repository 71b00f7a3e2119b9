"""The schema walk: every field of the federated types, asked by an admin and by a researcher.

For each field of Patient, Study, Series, StudyComparison and PatientComparison (the whole
subtree under it selected), the admin's answer says whether the field carries identity:
a patient ID, name or birth date of the seeded demo truth in it, or an identity attribute
by name (patient ID, issuer, name, birth date, sex). A researcher asking the same gets
FORBIDDEN on it and no identity anywhere in the body; for every other field the researcher
gets exactly what the admin gets, without an error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from graphql import GraphQLObjectType, get_named_type

from resolvers.schema import schema
from tests.auth_support import AuthEnv, auth_env, leaked

WALKED = ("Patient", "Study", "Series", "StudyComparison", "PatientComparison")
IDENTITY_NAMES = {
    "patientId",
    "issuerOfPatientId",
    "name",
    "birthDate",
    "sex",
    "patientName",
    "accessionNumber",
}
LEAF_OBJECTS = {"Source": "id"}  # health would ping every archive on every row
VARYING = {"latencyMs", "checkedAt"}
DEPTH = 3  # object levels selected under a walked field


def _fields(type_name: str) -> dict[str, Any]:
    t = schema._schema.type_map[type_name]
    assert isinstance(t, GraphQLObjectType)
    return dict(t.fields)


def _selection(type_name: str, depth: int) -> str:
    """Every field of `type_name` (scalars, and objects down to `depth` levels)."""
    parts = []
    for name, f in _fields(type_name).items():
        inner = get_named_type(f.type)
        if not isinstance(inner, GraphQLObjectType):
            parts.append(name)
        elif inner.name in LEAF_OBJECTS:
            parts.append(f"{name} {{ {LEAF_OBJECTS[inner.name]} }}")
        elif depth > 0:
            parts.append(f"{name} {{ {_selection(inner.name, depth - 1)} }}")
    return " ".join(parts)


def _field_selection(type_name: str, field: str) -> str:
    inner = get_named_type(_fields(type_name)[field].type)
    if not isinstance(inner, GraphQLObjectType):
        return field
    if inner.name in LEAF_OBJECTS:
        return f"{field} {{ {LEAF_OBJECTS[inner.name]} }}"
    return f"{field} {{ {_selection(inner.name, DEPTH - 1)} }}"


def _names_in(selection: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_]+", selection))


ROOTS = {
    "Patient": "{ patients(first: 50) { edges { node { %s } } } }",
    "Study": "{ studies(first: 50) { edges { node { %s } } } }",
    "Series": "{ studies(first: 50) { edges { node { series { %s } } } } }",
    "StudyComparison": "query($u: String!) { compareStudy(studyInstanceUid: $u) { %s } }",
    "PatientComparison": "query($p: String!) { comparePatient(patientId: $p) { %s } }",
}
CASES = [(t, f) for t in WALKED for f in _fields(t)]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthEnv]:
    """The module's required-auth stack, seeded with a few demo patients."""
    yield from auth_env(tmp_path_factory)


def _variables(env: AuthEnv) -> dict[str, str]:
    """A study whose copies disagree on the patient's name, and its patient."""
    study = next(s for s in env.truth.studies if "PatientName" in s.conflicts)
    return {"u": study.study_uid, "p": study.patient_id}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def test_the_served_schema_is_the_one_walked(env: AuthEnv) -> None:
    """Introspection (open without a token) lists exactly the fields the walk covers."""
    for type_name in WALKED:
        served = env.as_(None).data(
            "query($n: String!) { __type(name: $n) { fields { name } } }", n=type_name
        )["__type"]["fields"]
        assert sorted(f["name"] for f in served) == sorted(_fields(type_name)), type_name


@pytest.mark.parametrize(("type_name", "field"), CASES, ids=[f"{t}.{f}" for t, f in CASES])
def test_every_identity_field_is_forbidden_to_researchers(
    env: AuthEnv, type_name: str, field: str
) -> None:
    query = ROOTS[type_name] % _field_selection(type_name, field)
    variables = {k: v for k, v in _variables(env).items() if f"${k}" in query}
    admin = env.as_("admin").gql(query, **variables)
    assert not admin.get("errors"), admin["errors"]
    admin_text = json.dumps(admin, ensure_ascii=False)
    named = _names_in(_field_selection(type_name, field)) & IDENTITY_NAMES
    carries = bool(leaked(admin_text, env.truth)) or bool(named)

    response = env.as_("researcher").post(query, **variables)
    assert response.status_code == 200
    body = response.json()
    assert leaked(response.text, env.truth) == [], "no identity value reaches a researcher"
    if carries or type_name == "PatientComparison":  # comparePatient is a search by identity
        codes = {e["extensions"]["code"] for e in body.get("errors") or []}
        assert codes == {"FORBIDDEN"}, f"{type_name}.{field}: {body.get('errors')}"
        for error in body["errors"]:
            assert leaked(error["message"], env.truth) == []
    else:
        assert not body.get("errors"), f"{type_name}.{field} is not identity: {body['errors']}"
        assert _strip(body["data"]) == _strip(admin["data"])


def test_the_walk_found_identity_where_the_demo_has_it(env: AuthEnv) -> None:
    """The data-driven half of the walk is not vacuous: conflicts quoting names exist."""
    query = ROOTS["Patient"] % "conflicts { field values { value } }"
    admin = json.dumps(env.as_("admin").data(query), ensure_ascii=False)
    assert leaked(admin, env.truth), "the demo has name conflicts between archives"
    query = ROOTS["StudyComparison"] % "conflicts { field values { value } }"
    admin = json.dumps(env.as_("admin").data(query, u=_variables(env)["u"]), ensure_ascii=False)
    assert leaked(admin, env.truth)


def _decoded(text: str) -> str:
    out = []
    for token in re.findall(r"[A-Za-z0-9_\-=]{8,}", text):
        try:
            out.append(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
    return " ".join(out)


def test_page_cursors_do_not_carry_identity(env: AuthEnv) -> None:
    query = "{ patients(first: 2) { edges { cursor } pageInfo { endCursor } } }"
    response = env.as_("researcher").post(query)
    assert response.status_code == 200 and not response.json().get("errors")
    assert leaked(_decoded(response.text), env.truth) == []


def test_accession_numbers_are_forbidden_to_researchers(env: AuthEnv) -> None:
    response = env.as_("researcher").post(ROOTS["Study"] % "accessionNumber")
    assert not any(s.accession_number in response.text for s in env.truth.studies)
