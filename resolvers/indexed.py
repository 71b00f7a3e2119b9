"""Pages from the key index (`consistency: INDEXED`), verified live.

The index orders and cuts the page; then each archive is asked once for the page's
studies (a UID-list query), so `presentIn`, `missingFrom`, `conflicts` and `sourceResults`
still come from what the archives answer now. A study an archive no longer holds leaves
the index at once. An archive down still gives a page from the others, marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from graphql import GraphQLError
from sqlalchemy.exc import SQLAlchemyError

from gateway.core.enums import Consistency
from gateway.core.timing import as_utc
from gateway.core.uids import is_uid
from gateway.db.models import IndexState, utcnow
from gateway.federation.fanout import Outcome, Strikes, fan_out
from gateway.federation.merge import Merged, merge_patients, merge_studies
from gateway.index import store
from gateway.runtime import Runtime
from gateway.sources.base import PacsSource, PatientRecord, StudyQuery, StudyRecord
from resolvers.context import Context
from resolvers.cursors import decode_cursor

Answered = dict[str, list[StudyRecord]]
Outcomes = list[Outcome[list[StudyRecord]]]
DateKey = tuple[str, str, str]  # (study date, study time, study UID)


async def usable(ctx: Context, sources: Sequence[str], fresh: bool = True) -> bool:
    """True when every one of `sources` has a complete index fresher than the bound (of any
    age with `fresh` False: a walk begun on the index goes on, its rows verified live)."""
    states = ctx.extras.get("index_states")
    if states is None:
        states = ctx.extras["index_states"] = await index_states(ctx.runtime)
    return covered(ctx.runtime, states, sources, fresh)


async def index_states(runtime: Runtime) -> dict[str, IndexState]:
    """Each archive's index state; none when the database is away (the archives answer
    live)."""
    try:
        return await store.states(runtime.sessions)
    except (SQLAlchemyError, OSError):
        return {}


def covered(
    runtime: Runtime, states: dict[str, IndexState], sources: Sequence[str], fresh: bool
) -> bool:
    """True when `states` hold a complete index of every one of `sources` (fresher than the
    bound when `fresh`)."""
    if not sources:
        return False
    bound = runtime.settings.index_freshness_s
    now = utcnow()
    for source in sources:
        st = states.get(source)
        if st is None or not st.complete or st.refreshed_at is None:
            return False
        if fresh and (now - as_utc(st.refreshed_at)).total_seconds() > bound:
            return False
    return True


def walk_mode(after: str | None) -> Consistency | None:
    """The order a `studies` cursor was made in: INDEXED (newest first), LIVE (UID order),
    None without a cursor or for one of neither."""
    if not after:
        return None
    for prefix, mode in (("d", Consistency.INDEXED), ("k", Consistency.LIVE)):
        try:
            decode_cursor(after, prefix)
        except GraphQLError:
            continue
        return mode
    return None


def choose(asked: Consistency | None, indexable: bool) -> Consistency:
    """The mode a list uses: INDEXED unless asked for LIVE or the filter cannot be answered
    from the index (then LIVE whatever was asked)."""
    if asked is Consistency.LIVE or not indexable:
        return Consistency.LIVE
    return Consistency.INDEXED


async def verify(
    ctx: Context, queried: Sequence[str], skipped: Sequence[str], uids: Sequence[str]
) -> tuple[list[Outcome[list[StudyRecord]]], Answered]:
    """`verified` with this request's runtime and strikes."""
    return await verified(ctx.runtime, queried, skipped, uids, ctx.strikes)


async def verified(
    runtime: Runtime,
    queried: Sequence[str],
    skipped: Sequence[str],
    uids: Sequence[str],
    strikes: Strikes | None = None,
) -> tuple[list[Outcome[list[StudyRecord]]], Answered]:
    """Ask each archive once for `uids`; forget what an answering archive no longer holds.

    A UID that breaks the UID rules (a leading zero: archives hold such studies, and list
    them live) cannot be asked for by UID: an answering archive's index rows stand in.
    """
    askable = [u for u in uids if is_uid(u)]
    unaskable = [u for u in uids if not is_uid(u)]
    sessions = runtime.sessions
    # what the index holds of each archive: the patient IDs are a hint to the adapters
    indexed = await store.records(sessions, list(queried), askable) if askable else {}

    async def ask(source: PacsSource) -> list[StudyRecord]:
        if not askable:
            return []
        held = indexed.get(source.id, [])
        known = tuple((r.study_uid, r.patient_id) for r in held if r.patient_id)
        return await source.find_studies(
            StudyQuery(study_uids=tuple(askable), known_patients=known)
        )

    outcomes = await fan_out(runtime.sources, ask, queried, skipped, strikes)
    answered = {o.source: list(o.value or []) for o in outcomes if o.ok}
    if askable:
        for source, records in answered.items():
            said = {r.study_uid for r in indexed.get(source, [])}
            gone = said - {r.study_uid for r in records}
            await store.remove(sessions, source, gone)
    if unaskable:
        for source, records in (await store.records(sessions, list(answered), unaskable)).items():
            answered[source] += records
        outcomes = [replace(o, value=answered[o.source]) if o.ok else o for o in outcomes]
    return outcomes, answered


def named(record: StudyRecord, prefix: str) -> bool:
    """True when the record's patient name starts with the folded `prefix`."""
    return store.fold_name(record.patient_name).startswith(prefix)


def patients_of(answered: Answered) -> list[Merged[PatientRecord]]:
    """Patients merged from each archive's study answers (one record per patient and issuer)."""
    per_source: dict[str, list[PatientRecord]] = {}
    for source, records in answered.items():
        seen: dict[tuple[str, str | None], list[StudyRecord]] = {}
        for r in records:
            seen.setdefault((r.patient_id or "", r.issuer or None), []).append(r)
        per_source[source] = [
            PatientRecord(
                patient_id=pid,
                issuer=issuer,
                name=rs[0].patient_name,
                birth_date=rs[0].birth_date,
                sex=rs[0].sex,
                studies=len(rs),
            )
            for (pid, issuer), rs in seen.items()
        ]
    return merge_patients(per_source)


async def patient_rows(
    ctx: Context,
    queried: Sequence[str],
    skipped: Sequence[str],
    first: int,
    after: str | None,
    name: str | None,
) -> tuple[
    list[Merged[PatientRecord]], bool, str | None, list[Outcome[list[StudyRecord]]], Answered
]:
    """One page of patients from the index, verified live: (rows, has_next, the page's last
    patient ID in the index, outcomes, answers). The next page starts after that ID even
    when verification dropped its row (deleted, or held only by an archive that is down)."""
    sessions = ctx.runtime.sessions
    page = await store.patient_page(sessions, queried, first, after, name=name)
    held = await store.studies_of_patients(sessions, queried, page.patient_ids, name)
    uids = sorted({u for us in held.values() for u in us})
    outcomes, answered = await verify(ctx, queried, skipped, uids)
    if name is not None:  # an archive whose name for the patient does not match: as live
        answered = {s: [r for r in rs if named(r, name)] for s, rs in answered.items()}
        outcomes = [replace(o, value=answered[o.source]) if o.ok else o for o in outcomes]
    wanted = set(page.patient_ids)
    rows = [m for m in patients_of(answered) if m.first.patient_id in wanted]
    end = page.patient_ids[-1] if page.patient_ids else None
    return rows, page.has_next, end, outcomes, answered


async def study_rows(
    ctx: Context,
    queried: Sequence[str],
    skipped: Sequence[str],
    first: int,
    after: tuple[str, str, str] | None,
) -> tuple[
    list[Merged[StudyRecord]],
    list[DateKey],
    bool,
    DateKey | None,
    list[Outcome[list[StudyRecord]]],
]:
    """One page of studies, newest first, from the index, verified live: (rows, their keys,
    has_next, the page's last key in the index, outcomes); the next page starts after that
    key even when verification dropped its study."""
    page = await store.study_page(ctx.runtime.sessions, queried, first, after)
    uids = [k[2] for k in page.keys]
    outcomes, answered = await verify(ctx, queried, skipped, uids)
    merged = {m.key: m for m in merge_studies(answered)}
    keys = [k for k in page.keys if k[2] in merged]
    end = page.keys[-1] if page.keys else None
    return [merged[k[2]] for k in keys], keys, page.has_next, end, outcomes


async def study_window(
    runtime: Runtime, sources: Sequence[str], offset: int, limit: int
) -> tuple[list[Merged[StudyRecord]], list[Outcome[list[StudyRecord]]]] | None:
    """Studies `offset` to `offset + limit` of `sources`, newest first, from the index and
    verified live (one request per archive); None when the index does not cover them all
    (the caller lists live). For pages without a cursor (QIDO's `offset` and `limit`)."""
    if not covered(runtime, await index_states(runtime), sources, fresh=True):
        return None
    page = await store.study_page(runtime.sessions, sources, offset + limit, None)
    uids = [k[2] for k in page.keys[offset:]]
    outcomes, answered = await verified(runtime, sources, [], uids)
    merged = {m.key: m for m in merge_studies(answered)}
    return [merged[u] for u in uids if u in merged], outcomes
