"""Refused queries: depth, tokens and aliases (inside fragments too), with a code."""

from __future__ import annotations

import time
import uuid

from graphql import get_introspection_query, parse

from resolvers.limits import DEFAULT_MAX_FIELDS, MAX_ALIASES, MAX_REPEATS, field_counts
from resolvers.schema import schema


async def _errors(query: str) -> list[dict[str, object]]:
    result = await schema.execute(query)
    assert result.errors, "expected the query to be refused"
    return [e.formatted for e in result.errors]


async def test_aliases_counted_inside_fragments() -> None:
    fields = " ".join(f"a{i}: sources {{ id }}" for i in range(MAX_ALIASES + 1))
    errors = await _errors(f"query {{ ...F }} fragment F on Query {{ {fields} }}")
    assert any(e["extensions"]["code"] == "QUERY_TOO_COMPLEX" for e in errors)  # type: ignore[index]


async def test_aliases_split_over_fragments() -> None:
    half = (MAX_ALIASES // 2) + 1
    f1 = " ".join(f"a{i}: sources {{ id }}" for i in range(half))
    f2 = " ".join(f"b{i}: sources {{ id }}" for i in range(half))
    query = f"{{ ...F ...G }} fragment F on Query {{ {f1} }} fragment G on Query {{ {f2} }}"
    errors = await _errors(query)
    assert any("aliases" in str(e["message"]) for e in errors)


async def test_depth_limit() -> None:
    nested = "studies { patient { studies { patient { studies { patient { studies { patient { "
    nested += (
        "studies { patient { studies { patient { studies { patientId } } } } } } } } } } } } }"
    )
    errors = await _errors(f"{{ patients {{ edges {{ node {{ {nested} }} }} }} }}")
    assert any("depth" in str(e["message"]) for e in errors)


async def test_unknown_field_has_a_code() -> None:
    errors = await _errors("{ nope }")
    assert errors[0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"  # type: ignore[index]


async def test_token_limit_has_a_code() -> None:
    from resolvers.limits import MAX_TOKENS

    fields = " ".join(f"a{i}: sources {{ id }}" for i in range(MAX_TOKENS // 4))
    errors = await _errors(f"{{ {fields} }}")
    assert [e["extensions"] for e in errors] == [{"code": "QUERY_TOO_COMPLEX"}]
    assert "tokens" in str(errors[0]["message"])


async def test_syntax_error_has_a_code() -> None:
    errors = await _errors("{ sources { id }")
    assert [e["extensions"] for e in errors] == [{"code": "GRAPHQL_PARSE_FAILED"}]


async def test_aliases_counted_per_spread_of_a_fragment() -> None:
    """A fragment spread twice runs its aliases twice: they count twice."""
    half = (MAX_ALIASES // 2) + 1
    fields = " ".join(f"a{i}: sources {{ id }}" for i in range(half))
    query = f"{{ ...F ... on Query {{ ...F }} }} fragment F on Query {{ {fields} }}"
    errors = await _errors(query)
    assert any(e["extensions"]["code"] == "QUERY_TOO_COMPLEX" for e in errors)  # type: ignore[index]


async def test_nested_spreads_are_counted_without_blowing_up() -> None:
    """Ten levels of fragments, each spreading the next twice: 2**10 uses, refused fast."""
    defs = [
        f"fragment F{k} on Query {{ ...F{k + 1} ... on Query {{ ...F{k + 1} }} }}"
        for k in range(10)
    ]
    defs.append("fragment F10 on Query { x: sources { id } }")
    errors = await _errors("{ ...F0 } " + " ".join(defs))
    assert any("aliases" in str(e["message"]) for e in errors)


async def test_a_few_aliases_in_fragments_pass() -> None:
    result = await schema.execute(
        "{ ...F ... on Query { ...F } } fragment F on Query { a: sources { id } b: sources { id } }"
    )
    # executed (no request context here, so the resolver fails), not refused by the limit
    assert all("aliases" not in e.message for e in result.errors or [])
    assert result.errors and result.errors[0].path == ["a"]


# Field selections are bounded before validation (issue 12, finding 3): graphql-core's
# OverlappingFieldsCanBeMerged compares every pair of fields merged into one response path,
# so 300 repeated `sources { id health { up } }` took 1-2 s of CPU to validate.


def _repeated(times: int) -> str:
    heavy = " ".join(["sources { id health { up } }"] * times)
    return f"{{ a{uuid.uuid4().hex}: __typename {heavy} }}"  # new tokens: no cache helps


async def test_repeated_selections_are_refused_cheaply_before_validation() -> None:
    spent = []
    for _ in range(3):  # the least of three: other threads of the test process count too
        started = time.process_time()  # every thread of the process: validation's too
        errors = await _errors(_repeated(120))
        spent.append(time.process_time() - started)
        assert [e["extensions"] for e in errors] == [{"code": "QUERY_TOO_COMPLEX"}]
        assert "selected more than" in str(errors[0]["message"])
    assert min(spent) < 0.2, f"{spent} s of CPU to refuse"  # validating it: 0.3 s


async def test_repeats_multiply_through_nesting_and_add_up_over_fragments() -> None:
    """5 x 5 x 5 nested repeats merge 125 fields into one path (0.3 s to validate)."""
    series = " ".join(["studies { studyInstanceUid }"] * 5)
    patients = " ".join([f"patient {{ {series} }}"] * 5)
    nested = "{ " + " ".join([f'study(studyInstanceUid: "1.2") {{ {patients} }}'] * 5) + " }"
    errors = await _errors(nested)
    assert [e["extensions"]["code"] for e in errors] == ["QUERY_TOO_COMPLEX"]  # type: ignore[index]
    half = " ".join(["sources { id }"] * (MAX_REPEATS // 2 + 1))
    split = f"{{ ...A ...B }} fragment A on Query {{ {half} }} fragment B on Query {{ {half} }}"
    errors = await _errors(split)
    assert [e["extensions"]["code"] for e in errors] == ["QUERY_TOO_COMPLEX"]  # type: ignore[index]


async def test_an_unused_fragment_is_bounded_too() -> None:
    """Validation compares the fields of every fragment, used or not."""
    heavy = " ".join(["sources { id }"] * (MAX_REPEATS + 1))
    errors = await _errors(f"{{ sources {{ id }} }} fragment F on Query {{ {heavy} }}")
    assert [e["extensions"]["code"] for e in errors] == ["QUERY_TOO_COMPLEX"]  # type: ignore[index]


async def test_too_many_fields_are_refused() -> None:
    scalars = "studyInstanceUid patientId patientName studyDate studyTime description"
    sources = "presentIn { id name kind roles } missingFrom { id name kind roles }"
    series = "series { seriesInstanceUid studyInstanceUid modality seriesNumber description }"
    fragment = f"fragment S on Study {{ {scalars} accessionNumber {series} {sources} }}"

    def document(copies: int) -> str:  # each copy its own path (aliased)
        one = 'study(studyInstanceUid: "1.2") { ...S patient { studies { ...S } } }'
        return "{ " + " ".join(f"a{i}: {one}" for i in range(copies)) + " } " + fragment

    def fields(copies: int) -> int:
        return field_counts(parse(document(copies)), 10**6)[0]

    per_copy = fields(2) - fields(1)
    copies = (DEFAULT_MAX_FIELDS - (fields(1) - per_copy)) // per_copy + 1  # the fewest over
    assert copies <= MAX_ALIASES
    errors = await _errors(document(copies))
    assert [e["extensions"]["code"] for e in errors] == ["QUERY_TOO_COMPLEX"]  # type: ignore[index]
    assert "too many fields" in str(errors[0]["message"])
    fewer = await schema.execute(document(copies - 1))
    assert fewer.errors and fewer.errors[0].path, "under the bound: executed, not refused"


async def test_the_introspection_query_and_a_few_repeats_pass() -> None:
    """GraphiQL's introspection query (the largest a client sends) and fields repeated
    through fragments, as clients do, stay under the bounds."""
    introspection = get_introspection_query(input_value_deprecation=True, schema_description=True)
    result = await schema.execute(introspection)
    assert result.errors is None and result.data and result.data["__schema"]["types"]
    assert field_counts(parse(introspection), DEFAULT_MAX_FIELDS)[0] < DEFAULT_MAX_FIELDS // 2
    repeats = " ".join(["sources { id }"] * (MAX_REPEATS - 1))
    query = f"{{ ...F sources {{ name }} }} fragment F on Query {{ {repeats} }}"
    result = await schema.execute(query)
    assert all(e.extensions.get("code") != "QUERY_TOO_COMPLEX" for e in result.errors or [])


async def test_a_fragment_cycle_still_gets_its_validation_error() -> None:
    errors = await _errors("{ ...F } fragment F on Query { sources { id } ...F }")
    assert any("within itself" in str(e["message"]) for e in errors), errors
