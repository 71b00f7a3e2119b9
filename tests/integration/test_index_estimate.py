"""A name prefix's total on PostgreSQL: exact over few index rows, estimated over many."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from gateway.db.engine import make_engine, sessionmaker
from gateway.index import store
from gateway.index.store import name_prefix
from gateway.sources.base import StudyRecord
from tests.conftest import JobEnv

PATIENTS = 600


def records(source: str) -> list[StudyRecord]:
    """One study per patient; a third of the patients are MARTIN, archive "b" holds the
    even patients only."""
    out = []
    for i in range(PATIENTS):
        if source == "b" and i % 2:
            continue
        name = f"MARTIN^{i}" if i % 3 == 0 else f"SMITH^{i}"
        out.append(
            StudyRecord(
                study_uid=f"1.2.826.0.1.3680043.10.999.7.{i}",
                patient_id=f"EST{i:05d}",
                patient_name=name,
                study_date="20200101",
            )
        )
    return out


async def totals(url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[store.Total, store.Total, int]:
    engine = make_engine(url)
    sessions = sessionmaker(engine)
    try:
        for source in ("est-a", "est-b"):
            await store.upsert(sessions, source, records(source[-1]))
        async with sessions() as session:
            await session.execute(text("ANALYZE index_studies"))
            await session.commit()
        prefix = name_prefix("martin*")
        assert prefix is not None
        sources = ["est-a", "est-b"]
        exact = await store.total_patients(sessions, sources, prefix)
        monkeypatch.setattr(store, "RARE_ROWS", 50)  # the prefix's 300 rows are now "many"
        estimated = await store.total_patients(sessions, sources, prefix)
        counted = await store.count_patients(sessions, sources, prefix)
        return exact, estimated, counted
    finally:
        await engine.dispose()


def test_a_name_total_is_exact_over_few_rows_and_estimated_over_many(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    exact, estimated, counted = asyncio.run(totals(job_env.settings.database_url, monkeypatch))
    assert counted == PATIENTS // 3
    assert exact == store.Total(counted, estimated=False)
    assert estimated.estimated
    # the planner's rows for the prefix, scaled by the index's patients per row
    assert abs(estimated.n - counted) <= counted * 0.3, estimated
