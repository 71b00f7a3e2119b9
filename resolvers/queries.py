"""Root query fields of the read side."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import strawberry

from gateway.auth.policy import readable_sources
from gateway.core.enums import Consistency
from gateway.core.vr import VR
from gateway.federation.fanout import fan_out
from gateway.federation.merge import Merged, merge_patients, merge_studies, split_key
from gateway.index import store
from gateway.index.store import name_prefix
from gateway.sources.base import PatientQuery, StudyQuery
from resolvers import indexed
from resolvers.common import (
    PageInfo,
    Presence,
    SourceResult,
    bad_input,
    check_first,
    check_key,
    choose_sources,
    keep,
    page,
    source_results,
)
from resolvers.comparisons import PatientComparison, StudyComparison
from resolvers.context import Context, Info
from resolvers.cursors import decode_cursor, encode_cursor
from resolvers.federated import Patient, Study, StudyFilter
from resolvers.loaders import group
from resolvers.privacy import search_by_identity
from resolvers.types import Source

Counted = Callable[[], Awaitable[store.Total]]


def once(count: Counted) -> Counted:
    """`count`, run at most once however many fields of the connection ask for it."""
    task: asyncio.Future[store.Total] | None = None

    async def counted() -> store.Total:
        nonlocal task
        if task is None:
            task = asyncio.ensure_future(count())
        return await asyncio.shield(task)

    return counted


@strawberry.input
class PatientFilter:
    """Patient-level filter."""

    patient_id: str | None = None
    name: str | None = None
    birth_date: str | None = None
    sources: list[strawberry.ID] | None = None
    presence: Presence | None = Presence.ANY

    def check(self) -> None:
        """Refuse keys that are not valid DICOM matching keys (BAD_USER_INPUT)."""
        check_key("patientId", self.patient_id, VR.LO)
        check_key("name", self.name, VR.PN)
        check_key("birthDate", self.birth_date, VR.DA)


@strawberry.type
class PatientEdge:
    """One patient of a page."""

    node: Patient
    cursor: str


@strawberry.type
class Totalled:
    """A list's total, counted once however many of its fields are asked."""

    total: strawberry.Private[Counted]

    @strawberry.field(description="Every item of the list: from the index or live.")
    async def total_count(self) -> int:
        return (await self.total()).n

    @strawberry.field(
        description="Whether totalCount is estimated (a name prefix matching very many index "
        "rows); otherwise it is exact."
    )
    async def total_count_estimated(self) -> bool:
        return (await self.total()).estimated


@strawberry.type
class PatientConnection(Totalled):
    """A page of federated patients."""

    edges: list[PatientEdge]
    page_info: PageInfo
    source_results: list[SourceResult]


@strawberry.type
class StudyEdge:
    """One study of a page."""

    node: Study
    cursor: str


@strawberry.type
class StudyConnection(Totalled):
    """A page of federated studies."""

    edges: list[StudyEdge]
    page_info: PageInfo
    source_results: list[SourceResult]


def known(n: int) -> Counted:
    """A total already counted."""

    async def total() -> store.Total:
        return store.Total(n)

    return total


def _page_info(items: list[Merged[object]], has_next: bool) -> PageInfo:
    return PageInfo(
        has_next_page=has_next, end_cursor=encode_cursor(items[-1].key) if items else None
    )


@strawberry.type
class Query:
    """Read side of the API."""

    @strawberry.field
    def sources(self, info: Info) -> list[Source]:
        """The configured sources, in configuration order: every one for an admin, those
        within a user's source limit for anyone else."""
        caller, configs = info.context.caller, info.context.runtime.settings.sources
        if caller is not None and not caller.is_admin:
            mine = set(readable_sources(caller, [c.id for c in configs]))
            configs = tuple(c for c in configs if c.id in mine)
        return [Source(config=c) for c in configs]

    @strawberry.field
    async def patients(
        self,
        info: Info,
        filter: PatientFilter | None = None,
        first: int | None = 50,
        after: str | None = None,
        consistency: Consistency | None = None,
    ) -> PatientConnection:
        """Patients in every source, merged on PatientID, in PatientID order.

        INDEXED (the default where the filter allows it: none, or a name prefix `ABC*`)
        cuts the page from the key index and verifies its rows live; LIVE asks every
        archive for the whole list."""
        ctx = info.context
        first = 50 if first is None else first
        check_first(first)
        f = filter or PatientFilter()
        f.check()
        search_by_identity(info, f.patient_id, f.name, f.birth_date)
        queried, skipped = choose_sources(ctx, f.sources)
        prefix = name_prefix(f.name)
        indexable = (
            f.patient_id is None
            and f.birth_date is None
            and f.presence in (None, Presence.ANY)
            and (f.name is None or prefix is not None)
        )
        mode = indexed.choose(consistency, indexable)
        if mode is Consistency.INDEXED and await indexed.usable(ctx, queried):
            return await _indexed_patients(ctx, queried, skipped, first, after, prefix)
        query = PatientQuery(patient_id=f.patient_id, name=f.name, birth_date=f.birth_date)
        outcomes = await fan_out(
            ctx.runtime.sources, lambda s: s.find_patients(query), queried, skipped, ctx.strikes
        )
        merged = [
            m
            for m in merge_patients({o.source: o.value or [] for o in outcomes if o.ok})
            if keep(m, f.presence)
        ]
        items, has_next = page(merged, first, after)
        hint = StudyQuery(patient_id=f.patient_id, patient_name=f.name)
        loader = ctx.loaders.studies_of_page(queried, hint)
        return PatientConnection(
            edges=[
                PatientEdge(node=Patient(m=m, loader=loader), cursor=encode_cursor(m.key))
                for m in items
            ],
            page_info=_page_info(items, has_next),  # type: ignore[arg-type]
            total=known(len(merged)),
            source_results=source_results(ctx, outcomes, Consistency.LIVE),
        )

    @strawberry.field
    async def patient(self, info: Info, patient_id: str) -> Patient | None:
        """One patient by exact PatientID."""
        _exact_patient_id(patient_id)
        search_by_identity(info, patient_id)
        ctx = info.context
        query = PatientQuery(patient_id=patient_id)
        outcomes = await fan_out(
            ctx.runtime.sources,
            lambda s: s.find_patients(query),
            ctx.query_sources,
            strikes=ctx.strikes,
        )
        merged = merge_patients({o.source: o.value or [] for o in outcomes if o.ok})
        match = [m for m in merged if split_key(m.key)[0] == patient_id]
        return Patient(m=match[0]) if match else None

    @strawberry.field
    async def studies(
        self,
        info: Info,
        filter: StudyFilter | None = None,
        first: int | None = 50,
        after: str | None = None,
        consistency: Consistency | None = None,
    ) -> StudyConnection:
        """Studies in every source, merged on StudyInstanceUID.

        INDEXED (the default without a filter): newest first (study date and time, then UID),
        cut from the key index and verified live. LIVE (with a filter, or when asked): every
        archive asked for the whole list, in UID order."""
        ctx = info.context
        first = 50 if first is None else first
        check_first(first)
        f = filter or StudyFilter()
        f.check()
        search_by_identity(info, f.patient_id, f.patient_name, f.accession_number)
        queried, skipped = choose_sources(ctx, f.sources)
        unfiltered = f.to_query() == StudyQuery() and f.presence in (None, Presence.ANY)
        # a walk goes on in the order it began in, whether the index came or went meanwhile
        begun = indexed.walk_mode(after) if unfiltered else None
        mode = indexed.choose(consistency or begun, unfiltered)
        fresh = begun is not Consistency.INDEXED
        if mode is Consistency.INDEXED and await indexed.usable(ctx, queried, fresh):
            return await _indexed_studies(ctx, queried, skipped, first, after)
        query = f.to_query()
        outcomes = await fan_out(
            ctx.runtime.sources, lambda s: s.find_studies(query), queried, skipped, ctx.strikes
        )
        merged = [
            m
            for m in merge_studies({o.source: o.value or [] for o in outcomes if o.ok})
            if keep(m, f.presence)
        ]
        items, has_next = page(merged, first, after)
        return StudyConnection(
            edges=[StudyEdge(node=Study(m=m), cursor=encode_cursor(m.key)) for m in items],
            page_info=_page_info(items, has_next),  # type: ignore[arg-type]
            total=known(len(merged)),
            source_results=source_results(ctx, outcomes, Consistency.LIVE),
        )

    @strawberry.field
    async def study(self, info: Info, study_instance_uid: str) -> Study | None:
        """One study by UID."""
        check_key("studyInstanceUid", study_instance_uid, VR.UI, required=True)
        fed = await info.context.loaders.studies_by_uid.load(study_instance_uid)
        merged = merge_studies(fed.answered)
        return Study(m=merged[0]) if merged else None

    @strawberry.field
    async def compare_study(self, info: Info, study_instance_uid: str) -> StudyComparison:
        """The study in every source, compared down to instance level."""
        check_key("studyInstanceUid", study_instance_uid, VR.UI, required=True)
        fed = await info.context.loaders.studies_by_uid.load(study_instance_uid)
        return StudyComparison(study_instance_uid=study_instance_uid, fed=fed)

    @strawberry.field
    async def compare_patient(self, info: Info, patient_id: str) -> PatientComparison:
        """Every study of the patient, compared across sources."""
        _exact_patient_id(patient_id)
        search_by_identity(info, patient_id)
        ctx = info.context
        query = StudyQuery(patient_id=patient_id)
        outcomes = await fan_out(
            ctx.runtime.sources,
            lambda s: s.find_studies(query),
            ctx.query_sources,
            strikes=ctx.strikes,
        )
        uids = sorted({r.study_uid for o in outcomes if o.ok for r in o.value or []})
        feds = group(uids, outcomes, lambda r: r.study_uid)
        return PatientComparison(
            asked=patient_id,
            outcomes=outcomes,
            studies=[
                StudyComparison(study_instance_uid=u, fed=f)
                for u, f in zip(uids, feds, strict=True)
            ],
        )


def _exact_patient_id(patient_id: str) -> None:
    """An exact ID: a wildcard or an empty ID would compare (or look up) every patient."""
    check_key("patientId", patient_id, VR.LO, wildcards=False, required=True)


EXAMPLES = """\
# PACS gateway: one query, every archive.
# Pick an operation with the run button. Patient data shown here is audited later;
# error messages never contain any.

# Federated search by name: DICOM wildcards (* and ?), case-insensitive.
# sourceResults says how each archive answered (OK, ERROR, TIMEOUT, SKIPPED).
query SearchPatientsByName {
  patients(filter: { name: "SMITH*" }, first: 20) {
    totalCount
    pageInfo { hasNextPage endCursor }
    sourceResults { source { id } status latencyMs count error }
    edges {
      node {
        patientId
        name
        birthDate
        sex
        presentIn { id }
        missingFrom { id }
        conflicts { field values { source { id } value } }
        studies { studyInstanceUid studyDate description modalities presentIn { id } }
      }
    }
  }
}

# A study compared down to instance level in every archive that holds it.
# Paste a StudyInstanceUID from the search above.
query CompareStudy {
  compareStudy(studyInstanceUid: "1.2.826.0.1.3680043.8.498.1") {
    studyInstanceUid
    inSync
    sources { source { id } present series instances status latencyMs }
    missing { level uid missingFrom { id } presentIn { id } }
    conflicts { field values { source { id } value } }
  }
}

# The configured archives and a live check of each.
query SourcesHealth {
  sources {
    id
    name
    kind
    roles
    health { up latencyMs checkedAt error }
  }
}
"""


async def _indexed_patients(
    ctx: Context,
    queried: list[str],
    skipped: list[str],
    first: int,
    after: str | None,
    prefix: str | None,
) -> PatientConnection:
    after_id = split_key(decode_cursor(after))[0] if after is not None else None
    rows, has_next, end, outcomes, answered = await indexed.patient_rows(
        ctx, queried, skipped, first, after_id, prefix
    )
    uids = tuple(sorted({r.study_uid for records in answered.values() for r in records}))
    loader = ctx.loaders.studies_of_page(queried, StudyQuery(study_uids=uids))
    pids = sorted({m.first.patient_id for m in rows})
    for pid, fed in zip(pids, group(pids, outcomes, lambda r: r.patient_id or ""), strict=True):
        loader.prime(pid, fed)  # the page's studies are known: no second request

    # after the index's last ID of the page: a page whose rows all went still leads on
    end_cursor = None if end is None else encode_cursor(end)
    if rows and rows[-1].first.patient_id == end:
        end_cursor = encode_cursor(rows[-1].key)

    async def total() -> store.Total:
        return await store.total_patients(ctx.runtime.sessions, queried, prefix)

    return PatientConnection(
        edges=[
            PatientEdge(node=Patient(m=m, loader=loader), cursor=encode_cursor(m.key)) for m in rows
        ],
        page_info=PageInfo(has_next_page=has_next, end_cursor=end_cursor),
        total=once(total),
        source_results=source_results(ctx, outcomes, Consistency.INDEXED),
    )


async def _indexed_studies(
    ctx: Context, queried: list[str], skipped: list[str], first: int, after: str | None
) -> StudyConnection:
    key: indexed.DateKey | None = None
    if after is not None:
        parts = decode_cursor(after, "d").split("|")
        if len(parts) != 3:
            raise bad_input("invalid cursor")
        key = (parts[0], parts[1], parts[2])
    rows, keys, has_next, end, outcomes = await indexed.study_rows(
        ctx, queried, skipped, first, key
    )

    async def total() -> store.Total:
        return store.Total(await store.count_studies(ctx.runtime.sessions, queried))

    return StudyConnection(
        edges=[
            StudyEdge(node=Study(m=m), cursor=encode_cursor("|".join(k), "d"))
            for m, k in zip(rows, keys, strict=True)
        ],
        page_info=PageInfo(
            has_next_page=has_next,
            end_cursor=encode_cursor("|".join(end), "d") if end is not None else None,
        ),
        total=once(total),
        source_results=source_results(ctx, outcomes, Consistency.INDEXED),
    )
