"""Pages from the key index (`consistency: INDEXED`), verified live.

The index orders and cuts the page; then each archive is asked once for the page's
studies (a UID-list query), so `presentIn`, `missingFrom`, `conflicts` and `sourceResults`
still come from what the archives answer now. A study an archive no longer holds leaves
the index at once. An archive down still gives a page from the others, marked.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from gateway.core.enums import Consistency
from gateway.core.timing import as_utc
from gateway.db.models import utcnow
from gateway.federation.fanout import Outcome, fan_out
from gateway.federation.merge import Merged, merge_patients, merge_studies
from gateway.index import store
from gateway.sources.base import PatientRecord, StudyQuery, StudyRecord
from resolvers.context import Context

Answered = dict[str, list[StudyRecord]]
Outcomes = list[Outcome[list[StudyRecord]]]
DateKey = tuple[str, str, str]  # (study date, study time, study UID)


async def usable(ctx: Context, sources: Sequence[str]) -> bool:
    """True when every one of `sources` has a complete index fresher than the bound."""
    if not sources:
        return False
    states = ctx.extras.get("index_states")
    if states is None:
        try:
            states = await store.states(ctx.runtime.sessions)
        except (SQLAlchemyError, OSError):  # the database is away: the archives answer live
            states = {}
        ctx.extras["index_states"] = states
    bound = ctx.runtime.settings.index_freshness_s
    now = utcnow()
    for source in sources:
        st = states.get(source)
        if st is None or not st.complete or st.refreshed_at is None:
            return False
        if (now - as_utc(st.refreshed_at)).total_seconds() > bound:
            return False
    return True


def choose(asked: Consistency | None, indexable: bool) -> Consistency:
    """The mode a list uses: INDEXED unless asked for LIVE or the filter cannot be answered
    from the index (then LIVE whatever was asked)."""
    if asked is Consistency.LIVE or not indexable:
        return Consistency.LIVE
    return Consistency.INDEXED


async def verify(
    ctx: Context, queried: Sequence[str], skipped: Sequence[str], uids: Sequence[str]
) -> tuple[list[Outcome[list[StudyRecord]]], Answered]:
    """Ask each archive once for `uids`; forget what an answering archive no longer holds."""
    query = StudyQuery(study_uids=tuple(uids))

    async def ask(source: object) -> list[StudyRecord]:
        return await source.find_studies(query) if uids else []  # type: ignore[attr-defined]

    outcomes = await fan_out(ctx.runtime.sources, ask, queried, skipped, ctx.strikes)
    answered = {o.source: list(o.value or []) for o in outcomes if o.ok}
    if uids:
        said = await store.holders(ctx.runtime.sessions, list(answered), uids)
        for source, records in answered.items():
            gone = set(said.get(source, [])) - {r.study_uid for r in records}
            await store.remove(ctx.runtime.sessions, source, gone)
    return outcomes, answered


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
) -> tuple[list[Merged[PatientRecord]], bool, list[Outcome[list[StudyRecord]]], Answered]:
    """One page of patients from the index, verified live: (rows, has_next, outcomes, answers)."""
    sessions = ctx.runtime.sessions
    page = await store.patient_page(sessions, queried, first, after, name=name)
    held = await store.studies_of_patients(sessions, queried, page.patient_ids)
    uids = sorted({u for us in held.values() for u in us})
    outcomes, answered = await verify(ctx, queried, skipped, uids)
    wanted = set(page.patient_ids)
    rows = [m for m in patients_of(answered) if m.first.patient_id in wanted]
    return rows, page.has_next, outcomes, answered


async def study_rows(
    ctx: Context,
    queried: Sequence[str],
    skipped: Sequence[str],
    first: int,
    after: tuple[str, str, str] | None,
) -> tuple[
    list[Merged[StudyRecord]], list[tuple[str, str, str]], bool, list[Outcome[list[StudyRecord]]]
]:
    """One page of studies, newest first, from the index, verified live."""
    page = await store.study_page(ctx.runtime.sessions, queried, first, after)
    uids = [k[2] for k in page.keys]
    outcomes, answered = await verify(ctx, queried, skipped, uids)
    merged = {m.key: m for m in merge_studies(answered)}
    keys = [k for k in page.keys if k[2] in merged]
    return [merged[k[2]] for k in keys], keys, page.has_next, outcomes
