"""Shared GraphQL types of federated results: source results, conflicts, paging."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError

from gateway.core.enums import Consistency
from gateway.core.errors import shown
from gateway.core.vr import VR, key_refusal
from gateway.federation.fanout import Outcome
from gateway.federation.merge import Conflict, Merged
from resolvers.context import Context
from resolvers.cursors import decode_cursor
from resolvers.types import Source, SourceStatus

MAX_PAGE = 500
T = TypeVar("T")


@strawberry.enum
class Presence(Enum):
    """Which merged objects to keep."""

    ANY = "ANY"
    ALL = "ALL"
    PARTIAL = "PARTIAL"


strawberry.enum(Consistency)


@strawberry.type
class SourceResult:
    """How one source answered one federated query."""

    source: Source
    status: SourceStatus
    latency_ms: float | None
    count: int | None
    error: str | None
    consistency: Consistency | None = strawberry.field(
        default=None, description="How the list was cut: from the key index, or live."
    )


@strawberry.type
class SourceValue:
    """One source's value of a conflicting attribute."""

    source: Source
    value: str | None


@strawberry.type
class FieldConflict:
    """An attribute whose value differs between the sources that hold the object."""

    field: str
    values: list[SourceValue]


@strawberry.type
class SourceCounts:
    """Counts of one study or series as one source holds it."""

    source: Source
    series: int | None
    instances: int | None


@strawberry.type
class PageInfo:
    """Relay page info."""

    has_next_page: bool
    end_cursor: str | None


def source_obj(ctx: Context, source_id: str) -> Source:
    """The `Source` object of a configured id."""
    return Source(config=ctx.runtime.settings.source(source_id))


def sources_of(ctx: Context, ids: Sequence[str]) -> list[Source]:
    """`Source` objects for ids."""
    return [source_obj(ctx, i) for i in ids]


def source_results(
    ctx: Context, outcomes: Sequence[Outcome[Any]], consistency: Consistency | None = None
) -> list[SourceResult]:
    """`sourceResults` of a fan-out (of a list cut as `consistency` says)."""
    return [
        SourceResult(
            source=source_obj(ctx, o.source),
            status=SourceStatus(o.status),
            latency_ms=o.latency_ms,
            count=len(o.value) if o.ok and isinstance(o.value, list) else None,
            error=o.error,
            consistency=consistency,
        )
        for o in outcomes
    ]


def conflicts(ctx: Context, items: Sequence[Conflict]) -> list[FieldConflict]:
    """GraphQL conflicts from merge conflicts."""
    return [
        FieldConflict(
            field=c.field,
            values=[SourceValue(source=source_obj(ctx, s), value=v) for s, v in c.values],
        )
        for c in items
    ]


def bad_input(message: str, code: str = "BAD_USER_INPUT") -> GraphQLError:
    """A refused argument, with `extensions.code`; never patient data in `message`."""
    return GraphQLError(message, extensions={"code": code})


def check_key(
    field: str, value: str | None, vr: VR, *, wildcards: bool = True, required: bool = False
) -> None:
    """Refuse (BAD_USER_INPUT) a matching key that is not valid DICOM for its VR, before any
    archive is asked; `required`: an empty key is refused too. The value is never echoed."""
    if required and not value:
        raise bad_input(f"{field}: a value is required")
    reason = key_refusal(value, vr, wildcards=wildcards)
    if reason is not None:
        raise bad_input(f"{field}: {reason}")


def choose_sources(
    ctx: Context, requested: Sequence[strawberry.ID] | None
) -> tuple[list[str], list[str]]:
    """(queried, skipped) source ids for a filter's `sources`; sources the caller may not
    read are skipped, never asked."""
    readable = ctx.query_sources
    if requested is None:
        return readable, [s for s in ctx.all_query_sources if s not in readable]
    known = {s.id for s in ctx.runtime.settings.sources}
    for r in requested:
        if r not in known:
            raise bad_input(f"unknown source id {shown(r)}")
    chosen = [s.id for s in ctx.runtime.settings.sources if s.id in requested]
    allowed = [s for s in chosen if ctx.caller is not None and ctx.caller.may_read_source(s)]
    return allowed, [s for s in ctx.all_query_sources if s not in allowed]


def keep(m: Merged[Any], presence: Presence | None) -> bool:
    """Presence filtering of one merged object."""
    if presence is Presence.ALL:
        return not m.missing_from
    if presence is Presence.PARTIAL:
        return bool(m.missing_from)
    return True


def check_first(first: int) -> None:
    """Refuse a page size outside 0..MAX_PAGE (PAGE_SIZE_EXCEEDED)."""
    if first < 0 or first > MAX_PAGE:
        raise bad_input(f"first must be between 0 and {MAX_PAGE}", "PAGE_SIZE_EXCEEDED")


def page(items: list[Merged[T]], first: int, after: str | None) -> tuple[list[Merged[T]], bool]:
    """Keyset page of merged objects sorted by key; (page, has_next)."""
    check_first(first)
    if after is not None:
        last = decode_cursor(after)
        items = [m for m in items if m.key > last]
    return items[:first], len(items) > first
