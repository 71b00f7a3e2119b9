"""The key index's totals kept per set of holding archives (`index_counts`).

After any sequence of writes (studies added, re-attributed to another patient, removed,
forgotten as unseen, by several archives) the kept totals over every choice of archives
equal the distinct keys counted from the rows; and the migration fills them for an index
built before they were kept.
"""

from __future__ import annotations

import random
from datetime import timedelta
from itertools import combinations
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.db.engine import alembic_config
from gateway.db.models import IndexedStudy, utcnow
from gateway.index import store
from gateway.sources.base import StudyRecord

SOURCES = ("a", "b", "c")
CHOICES = [list(c) for n in range(1, len(SOURCES) + 1) for c in combinations(SOURCES, n)]


async def counted(sessions: async_sessionmaker, kind: str, sources: list[str]) -> int:
    """The distinct keys read from the rows: what the kept totals must equal."""
    column = IndexedStudy.study_uid if kind == "study" else IndexedStudy.patient_id
    async with sessions() as session:
        return int(
            await session.scalar(
                select(func.count(func.distinct(column))).where(IndexedStudy.source.in_(sources))
            )
            or 0
        )


async def check(sessions: async_sessionmaker) -> None:
    for sources in CHOICES:
        studies = await store.count_studies(sessions, sources)
        patients = await store.count_patients(sessions, sources)
        assert studies == await counted(sessions, "study", sources), sources
        assert patients == await counted(sessions, "patient", sources), sources


async def test_kept_totals_equal_the_rows_after_any_writes(
    sessions: async_sessionmaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "BATCH", 3)  # several batches per write
    rnd = random.Random(20261203)
    uids = [f"1.2.3.{i}" for i in range(40)]
    pids = [f"P{i}" for i in range(8)] + [""]
    for step in range(120):
        source = rnd.choice(SOURCES)
        op = rnd.random()
        if op < 0.6:  # some new, some seen again, some under another patient
            picked = rnd.sample(uids, rnd.randint(1, 12))
            records = [StudyRecord(study_uid=u, patient_id=rnd.choice(pids)) for u in picked]
            await store.upsert(sessions, source, records)
        elif op < 0.85:
            await store.remove(sessions, source, rnd.sample(uids, rnd.randint(1, 10)))
        else:
            mark = utcnow()
            kept = rnd.sample(uids, rnd.randint(0, 20))
            await store.upsert(
                sessions, source, [StudyRecord(study_uid=u, patient_id="P1") for u in kept]
            )
            await store.remove_unseen(sessions, source, mark)
        if step % 10 == 9:
            await check(sessions)
    await check(sessions)
    assert await store.count_studies(sessions, ["a", "b", "c"]) > 0  # the walk held something


async def test_a_study_moving_between_archives_is_counted_once(
    sessions: async_sessionmaker,
) -> None:
    await store.upsert(sessions, "a", [StudyRecord(study_uid="1.1", patient_id="P1")])
    await store.upsert(sessions, "b", [StudyRecord(study_uid="1.1", patient_id="P1")])
    assert await store.count_studies(sessions, ["a", "b"]) == 1
    assert await store.count_studies(sessions, ["c"]) == 0
    await store.remove(sessions, "a", ["1.1"])
    assert await store.count_studies(sessions, ["a"]) == 0
    assert await store.count_studies(sessions, ["b"]) == 1
    assert await store.count_patients(sessions, ["a", "b"]) == 1
    await store.upsert(sessions, "b", [StudyRecord(study_uid="1.1", patient_id="P2")])
    assert await store.count_patients(sessions, ["b"]) == 1  # P1 lost its only study
    await store.remove_unseen(sessions, "b", utcnow() + timedelta(seconds=1))
    async with sessions() as session:
        left = (await session.execute(text("SELECT count(*) FROM index_counts"))).scalar()
    assert left == 0  # no set keeps a count of nothing


def test_the_migration_counts_an_index_built_before(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    migrations = alembic_config(url.replace("sqlite:", "sqlite+aiosqlite:"))
    command.upgrade(migrations, "0010_index_name_pattern")
    rows = [("a", "1.1", "P1"), ("b", "1.1", "P1"), ("a", "1.2", "P1"), ("c", "1.3", "P2")]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for source, uid, pid in rows:
                conn.execute(
                    text(
                        "INSERT INTO index_studies (source, study_uid, patient_id, issuer,"
                        " name_key, study_date, study_time, modalities, seen_at)"
                        " VALUES (:s, :u, :p, '', '', '', '', '', '2026-12-03 08:00:00')"
                    ),
                    {"s": source, "u": uid, "p": pid},
                )
        command.upgrade(migrations, "head")
        with engine.connect() as conn:
            kept = {
                (kind, holders): n
                for kind, holders, n in conn.execute(
                    text("SELECT kind, holders, n FROM index_counts")
                )
            }
    finally:
        engine.dispose()
    assert kept == {
        ("study", "a\nb"): 1,
        ("study", "a"): 1,
        ("study", "c"): 1,
        ("patient", "a\nb"): 1,
        ("patient", "c"): 1,
    }
