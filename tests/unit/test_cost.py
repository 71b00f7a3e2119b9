"""Query cost estimate (resolvers/cost.py) and the document cache (resolvers/documents.py)."""

from __future__ import annotations

import time

import pytest
import strawberry.schema.schema as strawberry_schema
from graphql import GraphQLSyntaxError, parse

from resolvers.common import MAX_PAGE
from resolvers.cost import DEFAULT_LIST, estimate
from resolvers.documents import Documents, cache_clear, document_key
from resolvers.schema import schema

S = schema._schema


def cost(query: str, variables: dict[str, object] | None = None, sources: int = 3) -> int:
    return estimate(S, parse(query), None, variables, sources)


def test_scalars_cost_nothing_and_fan_out_counts_per_source() -> None:
    assert cost("{ __typename }") == 0
    assert cost("{ sources { id } }") == 0  # in memory
    assert cost("{ sources { health { up } } }") == 3 * (1 + 1)  # a live check each
    one = cost('{ patient(patientId: "P") { patientId } }', sources=1)
    assert cost('{ patient(patientId: "P") { patientId } }', sources=4) == one + 3


def test_pages_multiply_by_first_or_its_default() -> None:
    page = "{ patients(first: %s) { edges { node { patientId presentIn { id } } } } }"
    small, large = cost(page % 10), cost(page % 100)
    assert large > 9 * (small - 10)
    by_default = cost("{ patients { edges { node { patientId presentIn { id } } } } }")
    assert by_default == cost(page % 50)
    var = "query($n: Int) { patients(first: $n) { edges { node { patientId } } } }"
    assert cost(var, {"n": 100}) == cost(page.replace(" presentIn { id }", "") % 100)
    assert cost(var, {"n": 10**9}) == cost(var, {"n": MAX_PAGE})
    assert cost(var, {"n": None}) == cost(var, {})


def test_nested_lists_multiply() -> None:
    studies = "{ patients(first: 10) { edges { node { studies { studyInstanceUid } } } } }"
    series = (
        "{ patients(first: 10) { edges { node { studies { series { seriesInstanceUid } } } } } }"
    )
    assert cost(series) > DEFAULT_LIST * (cost(studies) - 20)


def test_fragments_are_counted_per_spread_and_quickly() -> None:
    # each fragment spreads the next one twice: 2**20 spreads, counted once per fragment
    levels = 20
    frags = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels))
    doc = f"{{ ...F0 }} {frags} fragment F{levels} on Query {{ sources {{ health {{ up }} }} }}"
    started = time.perf_counter()
    assert cost(doc) == 2**levels * cost("{ sources { health { up } } }")
    assert time.perf_counter() - started < 1


def test_the_key_ignores_comments_commas_and_layout() -> None:
    a = document_key("{ sources { id name } }", 100)
    assert document_key("# one\n{sources{id,name}}  # two", 100) == a
    assert document_key("{ sources { id } }", 100) != a
    assert document_key("{ a: sources { id name } }", 100) != a
    assert document_key('query { f(x: "a  b") }', 100) != document_key('query { f(x: "a b") }', 100)


def test_the_key_counts_tokens_and_comments() -> None:
    with pytest.raises(GraphQLSyntaxError, match="more than 10 tokens"):
        document_key("#c\n" * 20 + "{ a }", 10)


async def test_a_comment_does_not_defeat_the_validation_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 3: each variant of one document is validated once, not once per comment."""
    calls = []
    validate = strawberry_schema.validate

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return validate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(strawberry_schema, "validate", counting)
    cache_clear()
    for i in range(5):
        result = await schema.execute(f"# variant {i}\n{{ __typename\n,  }}  # {i}")
        assert result.errors is None or all(
            e.extensions and e.extensions.get("code") != "GRAPHQL_VALIDATION_FAILED"
            for e in result.errors
        )
    assert len(calls) == 1


async def test_refused_documents_are_not_kept() -> None:
    """A stream of new invalid documents would otherwise fill the cache with their trees;
    valid ones stay."""
    cache_clear()
    for i in range(20):
        result = await schema.execute(f"{{ nosuchfield{i} }}")
        assert result.errors, "refused"
    assert len(Documents._parsed) == len(Documents._validated) == len(Documents._keys) == 0
    ok = await schema.execute("{ __typename }")
    assert ok.errors is None
    assert len(Documents._parsed) == len(Documents._keys) == 1
