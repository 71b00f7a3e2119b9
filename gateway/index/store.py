"""Reading and writing the key index (`index_studies`, `index_state`)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, func, insert, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from gateway.db.lock import serialize
from gateway.db.models import IndexCount, IndexedStudy, IndexState, utcnow
from gateway.sources.base import StudyRecord

BATCH = 500  # rows written per statement
STUDY, PATIENT = "study", "patient"  # the kinds of `index_counts`
_LOCK_KEY = 0x5047_4958  # "PGIX": orders the index's writers (each moves index_counts)


def _fold_char(c: str) -> str:
    if c in "\u0130\u0131":  # dotted capital and dotless small i: both match i and I
        return "I"
    lower = c.lower()
    if len(lower) != 1:
        return c
    upper = lower.upper()
    return upper if len(upper) == 1 else lower  # "ß" stays "ß" ("SS" would match "Strasser")


def _fold(text: str) -> str:
    """Case folded character by character, as the live matching's case-insensitive regex
    compares (`gateway.sources.matching.match_person_name`): a prefix of the folded name is
    exactly what a `PREFIX*` pattern matches live."""
    if text.isascii():
        return text.upper()
    return "".join(_fold_char(c) for c in text)


def fold_name(name: str | None) -> str:
    """A person name as the index compares it: upper case, components separated by `^`."""
    return _fold((name or "").strip())


def name_prefix(pattern: str | None) -> str | None:
    """The prefix of a `PREFIX*` name pattern (None when the pattern is anything else)."""
    if not pattern or not pattern.endswith("*"):
        return None
    prefix = pattern[:-1]
    if not prefix or any(c in prefix for c in "*?\\%_"):
        return None
    return _fold(prefix)  # not stripped: "M *" matches "M ^X" live, never "MARTIN"


def _row(source: str, r: StudyRecord, at: datetime) -> dict[str, object]:
    return {
        "source": source,
        "study_uid": r.study_uid,
        "patient_id": r.patient_id or "",
        "issuer": r.issuer or "",
        "patient_name": r.patient_name,
        "name_key": fold_name(r.patient_name),
        "birth_date": r.birth_date,
        "sex": r.sex,
        "study_date": r.study_date or "",
        "study_time": r.study_time or "",
        "accession_number": r.accession_number,
        "modalities": "\\".join(r.modalities),
        "description": r.description,
        "series_count": r.series_count,
        "instance_count": r.instance_count,
        "seen_at": at,
    }


async def upsert(sessions: async_sessionmaker, source: str, records: Sequence[StudyRecord]) -> int:
    """Write `records` of `source` (replacing what the index held for those studies; the
    last record of a UID wins); how many of these studies the index did not hold before,
    which the archive's count of studies (`IndexState.studies`) gains in the same
    transaction.

    One INSERT ... ON CONFLICT DO UPDATE per batch, rows in UID order: a build and a refresh
    writing the same studies at once both succeed (a delete-then-insert of one would fail
    on the other's row) and cannot deadlock each other.
    """
    at = utcnow()
    unique = sorted({r.study_uid: r for r in records}.values(), key=lambda r: r.study_uid)
    added = 0
    async with sessions() as session, session.begin():
        dialect = (await session.connection()).dialect.name
        await serialize(session, _LOCK_KEY, "index_counts")
        for start in range(0, len(unique), BATCH):
            chunk = unique[start : start + BATCH]
            uids = [r.study_uid for r in chunk]
            rows = await session.execute(
                select(IndexedStudy.study_uid, IndexedStudy.patient_id).where(
                    IndexedStudy.source == source, IndexedStudy.study_uid.in_(uids)
                )
            )
            had: dict[str, str] = {u: p for u, p in rows}
            added += len(chunk) - len(had)
            # whose holders can change: studies new to the archive, patients it gains or loses
            new = [u for u in uids if u not in had]
            pid = {r.study_uid: r.patient_id or "" for r in chunk}
            moved = {p for u, p in pid.items() if had.get(u) != p}
            moved |= {p for u, p in had.items() if p != pid[u]}
            before = await _holders(session, new, moved)
            values = [_row(source, r, at) for r in chunk]
            if (stmt := _upsert_statement(dialect, values[0])) is not None:
                await session.execute(stmt, values)
            else:
                await session.execute(
                    delete(IndexedStudy).where(
                        IndexedStudy.source == source, IndexedStudy.study_uid.in_(uids)
                    )
                )
                await session.execute(insert(IndexedStudy), values)
            await _move(session, before, await _holders(session, new, moved))
        await _count(session, source, added)
    return added


Holders = dict[tuple[str, str], frozenset[str]]  # (kind, study UID or patient ID): archives


async def _holders(session: AsyncSession, uids: Collection[str], pids: Collection[str]) -> Holders:
    """The archives holding each of these studies and patients (none: left out)."""
    found: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    asked = (
        (STUDY, IndexedStudy.study_uid, sorted(uids)),
        (PATIENT, IndexedStudy.patient_id, sorted(pids)),
    )
    for kind, column, values in asked:
        for start in range(0, len(values), BATCH):
            rows = await session.execute(
                select(column, IndexedStudy.source)
                .distinct()
                .where(column.in_(values[start : start + BATCH]))
            )
            for key, held_by in rows:
                found[(kind, key)].add(held_by)
    return {key: frozenset(sources) for key, sources in found.items()}


def _label(sources: frozenset[str]) -> str:
    return "\n".join(sorted(sources))


async def _move(session: AsyncSession, before: Holders, after: Holders) -> None:
    """Move `index_counts` by what a write changed: each key whose holders changed leaves
    its old set's count and joins its new one's."""
    change: Counter[tuple[str, str]] = Counter()
    for key in before.keys() | after.keys():
        old, new = before.get(key, frozenset()), after.get(key, frozenset())
        if old != new:
            if old:
                change[(key[0], _label(old))] -= 1
            if new:
                change[(key[0], _label(new))] += 1
    values = [{"kind": k, "holders": h, "n": n} for (k, h), n in sorted(change.items()) if n]
    if not values:
        return
    dialect = session.get_bind().dialect.name
    add = postgresql.insert(IndexCount) if dialect == "postgresql" else sqlite.insert(IndexCount)
    await session.execute(
        add.on_conflict_do_update(
            index_elements=["kind", "holders"], set_={"n": IndexCount.n + add.excluded.n}
        ),
        values,
    )
    await session.execute(delete(IndexCount).where(IndexCount.n == 0))


async def _count(session: AsyncSession, source: str, change: int) -> None:
    """Move the archive's kept count of studies (a count of its rows grew with it)."""
    if change:
        await session.execute(
            update(IndexState)
            .where(IndexState.source == source)
            .values(studies=IndexState.studies + change)
        )


_KEY = ("source", "study_uid")


def _upsert_statement(dialect: str, row: dict[str, object]) -> Executable | None:
    """INSERT ... ON CONFLICT (source, study_uid) DO UPDATE, where the dialect has it."""
    columns = [c for c in row if c not in _KEY]
    if dialect == "postgresql":
        pg = postgresql.insert(IndexedStudy)
        return pg.on_conflict_do_update(
            index_elements=list(_KEY), set_={c: pg.excluded[c] for c in columns}
        )
    if dialect == "sqlite":
        lite = sqlite.insert(IndexedStudy)
        return lite.on_conflict_do_update(
            index_elements=list(_KEY), set_={c: lite.excluded[c] for c in columns}
        )
    return None


async def remove(sessions: async_sessionmaker, source: str, study_uids: Iterable[str]) -> int:
    """Forget studies `source` no longer holds; how many rows went (the archive's count
    loses as many)."""
    uids = sorted(set(study_uids))
    if not uids:
        return 0
    async with sessions() as session, session.begin():
        await serialize(session, _LOCK_KEY, "index_counts")
        gone = 0
        for start in range(0, len(uids), BATCH):
            rows = await session.execute(
                select(IndexedStudy.study_uid, IndexedStudy.patient_id).where(
                    IndexedStudy.source == source,
                    IndexedStudy.study_uid.in_(uids[start : start + BATCH]),
                )
            )
            gone += await _delete(session, source, [(u, p) for u, p in rows])
        await _count(session, source, -gone)
    return gone


async def _delete(session: AsyncSession, source: str, rows: Sequence[tuple[str, str]]) -> int:
    """Delete these (study UID, patient ID) rows of `source`, moving `index_counts`."""
    if not rows:
        return 0
    uids, pids = [u for u, _ in rows], {p for _, p in rows}
    before = await _holders(session, uids, pids)
    await session.execute(
        delete(IndexedStudy).where(IndexedStudy.source == source, IndexedStudy.study_uid.in_(uids))
    )
    await _move(session, before, await _holders(session, uids, pids))
    return len(rows)


async def keys(sessions: async_sessionmaker, source: str) -> list[tuple[str, str]]:
    """The (study UID, patient ID) pair of every study the index holds for `source`."""
    async with sessions() as session:
        rows = await session.execute(
            select(IndexedStudy.study_uid, IndexedStudy.patient_id).where(
                IndexedStudy.source == source
            )
        )
        return [(uid, pid) for uid, pid in rows]


async def remove_unseen(sessions: async_sessionmaker, source: str, since: datetime) -> int:
    """Forget the studies of `source` not seen since `since` (after a full listing)."""
    async with sessions() as session, session.begin():
        await serialize(session, _LOCK_KEY, "index_counts")
        rows = await session.execute(
            select(IndexedStudy.study_uid, IndexedStudy.patient_id)
            .where(IndexedStudy.source == source, IndexedStudy.seen_at < since)
            .order_by(IndexedStudy.study_uid)
        )
        unseen = [(u, p) for u, p in rows]
        gone = 0
        for start in range(0, len(unseen), BATCH):
            gone += await _delete(session, source, unseen[start : start + BATCH])
        await _count(session, source, -gone)
    return gone


async def analyze(sessions: async_sessionmaker) -> None:
    """Refresh the query planner's statistics of the index (after a full listing wrote it).

    Without them PostgreSQL plans every page query for an empty table (a scan of every
    row of the listed archives) until autovacuum analyzes it, if it is on at all.
    """
    async with sessions() as session, session.begin():
        await session.execute(text("ANALYZE index_studies"))


async def state(sessions: async_sessionmaker, source: str) -> IndexState | None:
    """The index state of one archive."""
    async with sessions() as session:
        return await session.get(IndexState, source)


async def states(sessions: async_sessionmaker) -> dict[str, IndexState]:
    """Every archive's index state."""
    async with sessions() as session:
        return {s.source: s for s in (await session.scalars(select(IndexState))).all()}


async def save_state(
    sessions: async_sessionmaker, source: str, recount: bool = False, **values: object
) -> None:
    """Update (or create) the index state of one archive.

    Its count of studies is kept by `upsert` and `remove`; it is counted from the rows
    when the state is created, or with `recount` (a build, which reads every row anyway).
    """
    async with sessions() as session, session.begin():
        row = await session.get(IndexState, source)
        if row is None:
            row = IndexState(source=source, complete=False, studies=0)
            session.add(row)
            recount = True
        for key, value in values.items():
            setattr(row, key, value)
        if not recount:
            return
        row.studies = int(
            await session.scalar(
                select(func.count()).select_from(IndexedStudy).where(IndexedStudy.source == source)
            )
            or 0
        )


@dataclass(frozen=True, slots=True)
class PatientPage:
    """Patient IDs of one page, in order, and whether more follow."""

    patient_ids: list[str]
    has_next: bool


async def patient_page(
    sessions: async_sessionmaker,
    sources: Sequence[str],
    first: int,
    after: str | None,
    name: str | None = None,
    patient_id: str | None = None,
) -> PatientPage:
    """The next `first` distinct patient IDs after `after`, in order, held by any of `sources`.

    Reads rows in index order and skips repeats (a patient has a row per study and
    archive), so a page costs about the page, not the archive.
    """
    conditions: list[ColumnElement[bool]] = [IndexedStudy.source.in_(list(sources))]
    named = None if name is None else _named(name)
    if named is not None:
        conditions.append(named)
    if patient_id is not None:
        conditions.append(IndexedStudy.patient_id == patient_id)
    ids: list[str] = []
    cursor = after
    chunk = max(4 * (first + 1), 64)
    async with sessions() as session:
        # every archive's rows of the prefix: counted from the name index alone
        if named is not None and await _fewer(session, [named], RARE_ROWS):
            return await _rare_page(session, conditions, first, after)
        while True:
            query = select(IndexedStudy.patient_id).where(*conditions)
            if cursor is not None:  # "> cursor" also skips the rest of the last ID's rows
                query = query.where(IndexedStudy.patient_id > cursor)
            rows = list(
                (await session.scalars(query.order_by(IndexedStudy.patient_id).limit(chunk))).all()
            )
            for pid in rows:
                if not ids or ids[-1] != pid:
                    ids.append(pid)
            if len(rows) < chunk or len(ids) > first:
                break
            cursor = rows[-1]
    return PatientPage(ids[:first], len(ids) > first)


# a name prefix matching fewer index rows is read whole, then ordered, and its total
# counted; over more, its total is estimated (PostgreSQL)
RARE_ROWS = 10_000


def _pattern(name: str) -> str:
    """The LIKE pattern of a folded name prefix."""
    return name.replace("\\", "") + "%"


def _named(name: str) -> ColumnElement[bool]:
    """Rows whose folded name starts with `name`."""
    return IndexedStudy.name_key.like(_pattern(name))


async def _fewer(session: AsyncSession, conditions: Sequence[ColumnElement[bool]], n: int) -> bool:
    """Whether fewer than `n` rows meet `conditions` (reads at most `n`)."""
    some = select(IndexedStudy.name_key).where(*conditions).limit(n).subquery()
    return int(await session.scalar(select(func.count()).select_from(some)) or 0) < n


async def _rare_page(
    session: AsyncSession, conditions: Sequence[ColumnElement[bool]], first: int, after: str | None
) -> PatientPage:
    """A page of a rare name prefix: its rows read from the name index whole, then ordered.

    In patient ID order the planner would scan the patient index and skip every other
    name's rows (most of the index for a prefix of 0.1 % of the patients); the CTE cannot
    be merged into that plan.
    """
    more = [IndexedStudy.patient_id > after] if after is not None else []
    rows = (
        select(IndexedStudy.patient_id)
        .where(*conditions, *more)
        .cte("named")
        .prefix_with("MATERIALIZED")
    )
    query = select(rows.c.patient_id).distinct().order_by(rows.c.patient_id).limit(first + 1)
    ids = list((await session.scalars(query)).all())
    return PatientPage(ids[:first], len(ids) > first)


async def studies_of_patients(
    sessions: async_sessionmaker,
    sources: Sequence[str],
    patient_ids: Sequence[str],
    name: str | None = None,
) -> dict[str, list[str]]:
    """Study UIDs per archive of these patients; with `name` (a folded prefix), only where
    the archive's name for the patient starts with it, as a live name search answers."""
    more = [IndexedStudy.name_key.like(name + "%")] if name is not None else []
    return await _uids_by_source(sessions, sources, IndexedStudy.patient_id, patient_ids, more)


async def _uids_by_source(
    sessions: async_sessionmaker,
    sources: Sequence[str],
    column: InstrumentedAttribute[str],
    values: Sequence[str],
    more: Sequence[ColumnElement[bool]] = (),
) -> dict[str, list[str]]:
    """Study UIDs per archive of the rows whose `column` is one of `values` (and `more`)."""
    out: dict[str, list[str]] = {s: [] for s in sources}
    if not values:
        return out
    async with sessions() as session:
        rows = await session.execute(
            select(IndexedStudy.source, IndexedStudy.study_uid).where(
                IndexedStudy.source.in_(list(sources)), column.in_(list(values)), *more
            )
        )
        for source, uid in rows:
            out[source].append(uid)
    return out


@dataclass(frozen=True, slots=True)
class StudyPage:
    """Study UIDs of one page, newest first, with each one's (date, time) order key."""

    keys: list[tuple[str, str, str]]  # (study_date, study_time, study_uid)
    has_next: bool


async def study_page(
    sessions: async_sessionmaker,
    sources: Sequence[str],
    first: int,
    after: tuple[str, str, str] | None,
) -> StudyPage:
    """The next `first` distinct studies after `after`, newest first (date, time, UID).

    A study whose date differs between archives is ordered by its newest date.
    """
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    cursor = after
    chunk = max(2 * len(sources) * (first + 1), 64)
    order = (IndexedStudy.study_date, IndexedStudy.study_time, IndexedStudy.study_uid)
    async with sessions() as session:
        while True:
            query = select(*order).where(IndexedStudy.source.in_(list(sources)))
            if cursor is not None:
                query = query.where(tuple_(*order) < cursor)
            query = query.order_by(*(c.desc() for c in order)).limit(chunk)
            rows = [(d, t, u) for d, t, u in (await session.execute(query)).all()]
            fresh = [r for r in rows if r[2] not in seen]
            if fresh and after is not None:
                # a study met again at an older date of another archive was on an earlier page
                shown = await _newer_than(session, sources, [r[2] for r in fresh], after)
                fresh = [r for r in fresh if r[2] not in shown]
            for r in fresh:
                if r[2] not in seen:
                    seen.add(r[2])
                    out.append(r)
            if len(rows) < chunk or len(out) > first:
                break
            cursor = rows[-1]
    return StudyPage(out[:first], len(out) > first)


async def _newer_than(
    session: AsyncSession, sources: Sequence[str], uids: list[str], key: tuple[str, str, str]
) -> set[str]:
    order = (IndexedStudy.study_date, IndexedStudy.study_time, IndexedStudy.study_uid)
    rows = await session.scalars(
        select(IndexedStudy.study_uid).where(
            IndexedStudy.source.in_(list(sources)),
            IndexedStudy.study_uid.in_(uids),
            tuple_(*order) >= key,
        )
    )
    return set(rows.all())


async def holders(
    sessions: async_sessionmaker, sources: Sequence[str], study_uids: Sequence[str]
) -> dict[str, list[str]]:
    """Which of `sources` the index says hold each of `study_uids` (source -> UIDs)."""
    return await _uids_by_source(sessions, sources, IndexedStudy.study_uid, study_uids)


async def records(
    sessions: async_sessionmaker, sources: Sequence[str], study_uids: Sequence[str]
) -> dict[str, list[StudyRecord]]:
    """The index's records of `study_uids` per archive of `sources` (as last listed)."""
    out: dict[str, list[StudyRecord]] = {s: [] for s in sources}
    if not study_uids or not sources:
        return out
    async with sessions() as session:
        rows = await session.scalars(
            select(IndexedStudy).where(
                IndexedStudy.source.in_(list(sources)),
                IndexedStudy.study_uid.in_(list(study_uids)),
            )
        )
        for row in rows:
            out[row.source].append(_record(row))
    return out


def _record(row: IndexedStudy) -> StudyRecord:
    return StudyRecord(
        study_uid=row.study_uid,
        patient_id=row.patient_id or None,
        patient_name=row.patient_name,
        issuer=row.issuer or None,
        birth_date=row.birth_date,
        sex=row.sex,
        study_date=row.study_date or None,
        study_time=row.study_time or None,
        description=row.description,
        accession_number=row.accession_number,
        modalities=tuple(row.modalities.split("\\")) if row.modalities else (),
        series_count=row.series_count,
        instance_count=row.instance_count,
    )


async def count_patients(
    sessions: async_sessionmaker, sources: Sequence[str], name: str | None = None
) -> int:
    """Distinct patient IDs the index holds for `sources`; with `name` (a folded prefix),
    of the rows whose name starts with it (read from the name index's range)."""
    if name is None:
        return await _held(sessions, PATIENT, sources)
    async with sessions() as session:
        return await _count_named(session, sources, name)


async def _count_named(session: AsyncSession, sources: Sequence[str], name: str) -> int:
    query = select(func.count(func.distinct(IndexedStudy.patient_id))).where(
        IndexedStudy.source.in_(list(sources)), _named(name)
    )
    return int(await session.scalar(query) or 0)


@dataclass(frozen=True, slots=True)
class Total:
    """A list's total, exact or estimated."""

    n: int
    estimated: bool = False


async def total_patients(
    sessions: async_sessionmaker, sources: Sequence[str], name: str | None = None
) -> Total:
    """`count_patients`, in time that does not grow with the index: exact from the kept
    counts, or for a name prefix counted over its rows; a prefix of RARE_ROWS rows or more
    is estimated on PostgreSQL (its planner's rows for the prefix, times the index's
    patients per row)."""
    if name is None:
        return Total(await _held(sessions, PATIENT, sources))
    async with sessions() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        if not postgres or not sources or await _fewer(session, [_named(name)], RARE_ROWS):
            return Total(await _count_named(session, sources, name))
        # at least RARE_ROWS rows, as just counted: the planner's estimate for a long prefix
        # can be ten times lower
        planned = max(await _planned_rows(session, sources, name), float(RARE_ROWS))
        sets = await _holder_sets(session, sources)
    patients = sum(n for k, n in sets[PATIENT] if k)
    rows = sum(n * k for k, n in sets[STUDY])  # a study counts once per holder among them
    return Total(max(1, round(planned * patients / max(rows, 1))), estimated=True)


async def _planned_rows(session: AsyncSession, sources: Sequence[str], name: str) -> float:
    """The planner's estimate of the rows of `sources` whose name starts with `name`."""
    table = IndexedStudy.__tablename__
    explain = text(
        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {table}"
        " WHERE source IN :sources AND name_key LIKE :prefix"
    ).bindparams(bindparam("sources", expanding=True))
    plan = await session.scalar(explain, {"sources": list(sources), "prefix": _pattern(name)})
    doc = json.loads(plan) if isinstance(plan, str) else plan
    return float(doc[0]["Plan"]["Plan Rows"])


async def count_studies(sessions: async_sessionmaker, sources: Sequence[str]) -> int:
    """Distinct study UIDs the index holds for `sources`."""
    return await _held(sessions, STUDY, sources)


async def _held(sessions: async_sessionmaker, kind: str, sources: Sequence[str]) -> int:
    """Keys of `kind` held by any of `sources`: the counts of every set of holders that
    meets them (one row per set that occurs, not per key)."""
    async with sessions() as session:
        sets = await _holder_sets(session, sources)
    return sum(n for k, n in sets[kind] if k)


async def _holder_sets(
    session: AsyncSession, sources: Sequence[str]
) -> dict[str, list[tuple[int, int]]]:
    """Per kind, each kept set of holders as (how many of `sources` it holds, its keys)."""
    wanted = set(sources)
    sets: dict[str, list[tuple[int, int]]] = {PATIENT: [], STUDY: []}
    for kind, holders, n in await session.execute(
        select(IndexCount.kind, IndexCount.holders, IndexCount.n)
    ):
        sets.setdefault(kind, []).append((len(wanted.intersection(holders.split("\n"))), n))
    return sets
