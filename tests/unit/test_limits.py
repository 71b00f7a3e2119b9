"""Refused queries: depth, tokens and aliases (inside fragments too), with a code."""

from __future__ import annotations

from resolvers.limits import MAX_ALIASES
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
