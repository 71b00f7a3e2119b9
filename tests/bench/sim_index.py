"""Pages at hospital scale, simulated: the key index at 10^7 rows over in-memory archives.

    .venv/bin/python -m tests.bench.sim_index [--studies 5555556] [--patients 1000000]
        [--small 5556] [--repeat 5] [--keep] [--explain FILE]

Three in-memory archives ("mirror", "main", "legacy"; `SimArchive`, the `PacsSource`
protocol: `find_studies` with a UID list or an empty query, `find_patients`) hold
`--studies` distinct studies of `--patients` patients, placed like the demo seeder does
(main and mirror 55%, main and legacy 15%, all three 5%, one archive 25%: 1.8 copies per
study on average: the defaults give 10^7 index rows, and 10^4 at the small size, whose
patient count keeps the same studies per patient). Every attribute is a function of the
study number k, so the archives hold nothing but answer for every study in time
proportional to the question.

Each size gets a private PostgreSQL database (`pacs_gw_sim_index_<n>` on the server of
DATABASE_URL, default postgresql://postgres@127.0.0.1:5432), the project's migrations,
then the same rows written straight into `index_studies` by one INSERT ... SELECT over
generate_series per archive and million studies (indexes dropped for the load and built
again after it, then ANALYZE). At the small size the index is then built again through
`gateway.index.refresh.build` against the archives (the real code path: its rate, and a
check that both ways write the same rows).

Timed, median of `--repeat` after one warm-up, at both sizes: `store.patient_page` (first
page, the next by cursor, a deep cursor), `store.study_page` (first, next), name-prefix
pages (a common and a rare prefix), and full INDEXED pages through
`resolvers.indexed.patient_rows` / `study_rows` (index, then one UID-list request per
archive, merge), with each archive's requests counted. `--keep` keeps the databases;
a later run with the same sizes skips the load. Not a pytest test.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.core.enums import SourceKind
from gateway.core.errors import NotSupported
from gateway.core.settings import SourceConfig
from gateway.db.engine import make_engine, migrate, sessionmaker
from gateway.federation.fanout import Strikes
from gateway.index import store
from gateway.index.refresh import build
from gateway.sources.base import (
    InstanceQuery,
    InstanceRecord,
    PatientQuery,
    PatientRecord,
    SeriesQuery,
    SeriesRecord,
    StoreResult,
    StudyQuery,
    StudyRecord,
)
from gateway.sources.resilience import CallStats
from resolvers import indexed

SOURCES = ("mirror", "main", "legacy")
UID_ROOT = "1.2.826.0.1.3680043.10.1017."
# placement, as the seeder's COMBOS: cumulative percent -> archives holding the study
PLACES: tuple[tuple[int, tuple[str, ...]], ...] = (
    (55, ("main", "mirror")),
    (70, ("main", "legacy")),
    (75, ("main", "mirror", "legacy")),
    (85, ("main",)),
    (93, ("mirror",)),
    (100, ("legacy",)),
)
FAMILY = (
    "SMITH", "JOHNSON", "BROWN", "TAYLOR", "WILSON", "DAVIES", "EVANS", "THOMAS", "ROBERTS",
    "WALKER", "WRIGHT", "HUGHES", "GREEN", "HALL", "WOOD", "CLARKE", "JACKSON", "MARTIN",
    "MARTINEZ", "GARCIA", "LOPEZ", "ROSSI", "BIANCHI", "SCHMIDT", "SCHNEIDER", "FISCHER",
    "WEBER", "MEYER", "WAGNER", "BECKER", "DUBOIS", "LAMBERT", "BERNARD", "PETIT", "JANSSEN",
    "DE VRIES", "NOWAK", "KOWALSKI", "NOVAK", "HORVAT", "JENSEN", "HANSEN", "NIELSEN",
    "O'BRIEN", "MURPHY", "KELLY", "SILVA", "SANTOS", "COSTA", "PEREIRA", "KIM", "NGUYEN",
)  # fmt: skip
GIVEN = (
    "JAMES", "JOHN", "ROBERT", "MICHAEL", "DAVID", "PETER", "THOMAS", "MARK", "PAUL", "ANDREW",
    "MARY", "ANNA", "EMMA", "SARAH", "LAURA", "JULIA", "CLAIRE", "SOPHIE", "MARIA", "ELENA",
)  # fmt: skip
MODALITIES = ("CT", "MR", "CR", "US", "DX")
EPOCH = date(2000, 1, 1)
DAYS = 9490  # study dates 2000-01-01 .. 2025-12-25
A, C, D, E = 1_000_003, 7_919, 104_729, 37  # multipliers: patient, date, time, placement


RARE = "KOWALSKI^ROBERT"  # a name prefix of one patient in 1,040 (1/52 x 1/20)


class Model:
    """Every attribute of study k and patient p, computed (the same in SQL, `_select`)."""

    def __init__(self, studies: int, patients: int) -> None:
        assert studies >= patients > 0
        self.studies = studies
        self.patients = patients
        assert _gcd(A, patients) == 1, "A must be coprime with the patient count"
        self.a_inv = pow(A, -1, patients)

    def patient_of(self, k: int) -> int:
        return (k * A) % self.patients

    def studies_of(self, p: int) -> range:
        return range((p * self.a_inv) % self.patients, self.studies, self.patients)

    def holders(self, k: int) -> tuple[str, ...]:
        c = (k * E) % 100
        return PLACES[bisect.bisect_right([p for p, _ in PLACES], c)][1]

    @staticmethod
    def patient_id(p: int) -> str:
        return f"MRN{p:07d}"

    @staticmethod
    def name(p: int) -> str:
        return f"{FAMILY[(p * 31 + 7) % len(FAMILY)]}^{GIVEN[(p // 7) % len(GIVEN)]}"

    @staticmethod
    def birth_date(p: int) -> str:
        return f"{1930 + p % 90}{1 + p % 12:02d}{1 + p % 28:02d}"

    def record(self, k: int) -> StudyRecord:
        p = self.patient_of(k)
        seconds = (k * D) % 86400
        modality = MODALITIES[k % 5]
        return StudyRecord(
            study_uid=f"{UID_ROOT}{k}",
            patient_id=self.patient_id(p),
            patient_name=self.name(p),
            birth_date=self.birth_date(p),
            sex="MF"[p % 2],
            study_date=(EPOCH + timedelta(days=(k * C) % DAYS)).strftime("%Y%m%d"),
            study_time=f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
            description=f"SIM {modality}",
            accession_number=f"A{k}",
            modalities=(modality,),
            series_count=1 + k % 4,
            instance_count=10 + k % 300,
        )

    def number(self, uid: str) -> int | None:
        if not uid.startswith(UID_ROOT):
            return None
        tail = uid[len(UID_ROOT) :]
        if not tail.isdigit() or (len(tail) > 1 and tail[0] == "0"):
            return None
        k = int(tail)
        return k if k < self.studies else None


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


class SimArchive:
    """One in-memory archive: the studies `Model.holders` gives it, answered on demand."""

    def __init__(self, source_id: str, model: Model, latency_ms: float = 0.0) -> None:
        # kind: the sim answers UID lists the way a QIDO archive does
        self.config = SourceConfig(id=source_id, name=source_id, kind=SourceKind.DICOMWEB)
        self.model = model
        self.latency_s = latency_ms / 1000
        self._stats = CallStats()

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def stats(self) -> CallStats:
        return self._stats

    async def _call(self, op: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        value = fn()
        self._stats.record(op, (time.perf_counter() - start) * 1000, ok=True)
        return value

    def _holds(self, k: int) -> bool:
        return self.id in self.model.holders(k)

    async def ping(self) -> float:
        return 0.0

    async def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        """UID lists (with the index's patient IDs as a hint, unused here) and the empty
        query (every study) only."""
        rest = StudyQuery(study_uids=query.study_uids, known_patients=query.known_patients)
        if query != rest:
            raise NotSupported(self.id, "find_studies: the simulation answers UID lists only")

        def run() -> list[StudyRecord]:
            if query.study_uids:
                ks = {k for u in query.study_uids if (k := self.model.number(u)) is not None}
                found = [self.model.record(k) for k in sorted(ks) if self._holds(k)]
            else:
                found = [self.model.record(k) for k in range(self.model.studies) if self._holds(k)]
            return sorted(found, key=lambda r: r.study_uid)

        result: list[StudyRecord] = await self._call("find_studies", run)
        return result

    async def find_patients(self, query: PatientQuery) -> list[PatientRecord]:
        """Patients by exact ID, or every patient (small sizes only)."""

        def run() -> list[PatientRecord]:
            m = self.model
            if query.patient_id:
                p = int(query.patient_id[3:]) if query.patient_id[3:].isdigit() else -1
                people = [p] if 0 <= p < m.patients else []
            else:
                people = list(range(m.patients))
            out = []
            for p in people:
                n = sum(1 for k in m.studies_of(p) if self._holds(k))
                if n:
                    out.append(
                        PatientRecord(
                            m.patient_id(p), None, m.name(p), m.birth_date(p), "MF"[p % 2], n
                        )
                    )
            return out

        result: list[PatientRecord] = await self._call("find_patients", run)
        return result

    async def find_series(self, query: SeriesQuery) -> list[SeriesRecord]:
        return []

    async def find_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        return []

    async def retrieve_instance(
        self, study_uid: str, series_uid: str, sop_uid: str
    ) -> AsyncIterator[bytes]:
        raise NotSupported(self.id, "retrieve")
        yield b""  # pragma: no cover

    async def retrieve_study(
        self, study_uid: str, series_uids: Sequence[str] = ()
    ) -> AsyncIterator[bytes]:
        raise NotSupported(self.id, "retrieve")
        yield b""  # pragma: no cover

    async def store(self, files: Sequence[bytes]) -> StoreResult:
        raise NotSupported(self.id, "store")

    async def aclose(self) -> None:
        return None


# -- loading --------------------------------------------------------------------------------


def _sql_array(values: Sequence[str]) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _select(source: str, lo: int, hi: int, n_patients: int) -> str:
    """INSERT ... SELECT of `source`'s rows for studies lo..hi-1 (the SQL twin of `Model`)."""
    lows = [0, *[p for p, _ in PLACES[:-1]]]
    held = [
        f"(c >= {lo_} AND c < {hi_})"
        for lo_, (hi_, who) in zip(lows, PLACES, strict=True)
        if source in who
    ]
    family, given, mods = _sql_array(FAMILY), _sql_array(GIVEN), _sql_array(MODALITIES)
    name = (
        f"({family})[((p * 31 + 7) % {len(FAMILY)})::int + 1] || '^' || "
        f"({given})[((p / 7) % {len(GIVEN)})::int + 1]"
    )
    return f"""
INSERT INTO index_studies (source, study_uid, patient_id, issuer, patient_name, name_key,
  birth_date, sex, study_date, study_time, accession_number, modalities, description,
  series_count, instance_count, seen_at)
SELECT '{source}', '{UID_ROOT}' || k, 'MRN' || lpad(p::text, 7, '0'), '', {name}, {name},
  (1930 + p % 90)::text || lpad((1 + p % 12)::text, 2, '0') || lpad((1 + p % 28)::text, 2, '0'),
  CASE WHEN p % 2 = 0 THEN 'M' ELSE 'F' END,
  to_char(date '2000-01-01' + ((k * {C}) % {DAYS})::int, 'YYYYMMDD'),
  lpad((((k * {D}) % 86400) / 3600)::text, 2, '0')
    || lpad(((((k * {D}) % 86400) / 60) % 60)::text, 2, '0')
    || lpad((((k * {D}) % 86400) % 60)::text, 2, '0'),
  'A' || k, ({mods})[(k % 5)::int + 1], 'SIM ' || ({mods})[(k % 5)::int + 1],
  1 + k % 4, 10 + k % 300, now()
FROM (SELECT k, (k * {A}) % {n_patients} AS p, (k * {E}) % 100 AS c
      FROM generate_series({lo}::bigint, {hi - 1}::bigint) AS k) AS s
WHERE {" OR ".join(held)}
"""


INDEXES = (
    "ALTER TABLE index_studies ADD PRIMARY KEY (source, study_uid)",
    "CREATE INDEX ix_index_studies_patient ON index_studies (patient_id, issuer)",
    "CREATE INDEX ix_index_studies_date ON index_studies (study_date, study_time, study_uid)",
    "CREATE INDEX ix_index_studies_name ON index_studies (name_key varchar_pattern_ops)",
    "CREATE INDEX ix_index_studies_uid ON index_studies (study_uid)",
)
DROP = (
    "ALTER TABLE index_studies DROP CONSTRAINT IF EXISTS index_studies_pkey",
    "DROP INDEX IF EXISTS ix_index_studies_patient",
    "DROP INDEX IF EXISTS ix_index_studies_date",
    "DROP INDEX IF EXISTS ix_index_studies_name",
    "DROP INDEX IF EXISTS ix_index_studies_uid",
)


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def database(server: str, name: str, create: bool) -> str:
    """The URL of database `name` on `server`, created (empty) when `create`."""
    parsed = urlparse(server)
    admin = parsed._replace(path="/postgres").geturl()
    if create:
        for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
            subprocess.run(["psql", admin, "-tAc", sql], check=True, capture_output=True)
    return parsed._replace(path=f"/{name}").geturl()


def exists(server: str, name: str) -> bool:
    """Whether database `name` exists on `server`."""
    admin = urlparse(server)._replace(path="/postgres").geturl()
    sql = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"
    out = subprocess.run(["psql", admin, "-tAc", sql], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "1"


def drop(url: str) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if name.startswith("pacs_gw_sim_index_"):
        admin = parsed._replace(path="/postgres").geturl()
        sql = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        subprocess.run(["psql", admin, "-tAc", sql], check=False, capture_output=True)


async def rows_in(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        try:
            return int(
                (await conn.execute(text("SELECT count(*) FROM index_studies"))).scalar() or 0
            )
        except Exception:
            return -1


async def load(engine: AsyncEngine, model: Model, chunk: int = 1_000_000) -> dict[str, float]:
    """Write every archive's rows straight into index_studies; seconds per phase."""
    out: dict[str, float] = {}
    async with engine.begin() as conn:
        for sql in DROP:
            await conn.execute(text(sql))
        await conn.execute(text("TRUNCATE index_studies, index_state, index_counts"))
    start = time.perf_counter()
    for lo in range(0, model.studies, chunk):
        hi = min(model.studies, lo + chunk)
        async with engine.begin() as conn:
            for source in SOURCES:
                await conn.execute(text(_select(source, lo, hi, model.patients)))
        log(f"  rows for studies {lo:,}..{hi:,} written ({time.perf_counter() - start:.0f}s)")
    out["insert_s"] = time.perf_counter() - start
    start = time.perf_counter()
    async with engine.connect() as conn:
        await conn.execute(text("SET maintenance_work_mem = '512MB'"))
        for sql in INDEXES:
            t = time.perf_counter()
            await conn.execute(text(sql))
            await conn.commit()
            log(f"  {sql.split(' ON ')[0]}: {time.perf_counter() - t:.0f}s")
    out["index_s"] = time.perf_counter() - start
    start = time.perf_counter()
    async with engine.begin() as conn:
        for kind, column in (("study", "study_uid"), ("patient", "patient_id")):
            await conn.execute(text(COUNTS.format(kind=kind, column=column)))
    out["counts_s"] = time.perf_counter() - start
    start = time.perf_counter()
    await vacuum(engine)
    out["analyze_s"] = time.perf_counter() - start
    return out


# what `store` keeps in index_counts, counted once after a bulk load (sources in code order)
COUNTS = """
INSERT INTO index_counts (kind, holders, n)
SELECT '{kind}', holders, count(*) FROM (
  SELECT {column}, string_agg(source, E'\\n' ORDER BY source COLLATE "C") AS holders
  FROM (SELECT DISTINCT {column}, source FROM index_studies) AS d GROUP BY {column}
) AS h GROUP BY holders
"""


async def vacuum(engine: AsyncEngine) -> None:
    """VACUUM ANALYZE the index (outside a transaction)."""
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        await conn.execute(text("VACUUM ANALYZE index_studies"))


async def mark_built(sessions: async_sessionmaker) -> None:
    now = datetime.now(UTC)
    for source in SOURCES:
        await store.save_state(
            sessions, source, cursor=None, complete=True, built_at=now, refreshed_at=now
        )


# -- timing ---------------------------------------------------------------------------------

Timed = Callable[[], Awaitable[Any]]


async def median_ms(fn: Timed, repeat: int) -> tuple[float, Any]:
    value = await fn()  # warm-up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        value = await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), value


class Sim:
    """One size: its database, archives and the context the resolvers need."""

    def __init__(self, n_studies: int, n_patients: int, url: str) -> None:
        self.model = Model(n_studies, n_patients)
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine)
        self.archives = {s: SimArchive(s, self.model) for s in SOURCES}
        self.sql: list[tuple[str, Any, float]] | None = None
        sync = self.engine.sync_engine

        @event.listens_for(sync, "before_cursor_execute")
        def before(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool):  # type: ignore[no-untyped-def]
            conn.info["sim_t"] = time.perf_counter()

        @event.listens_for(sync, "after_cursor_execute")
        def after(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool):  # type: ignore[no-untyped-def]
            if self.sql is not None:
                ms = (time.perf_counter() - conn.info.pop("sim_t", time.perf_counter())) * 1000
                self.sql.append((statement, params, ms))

    def ctx(self) -> Any:
        runtime = SimpleNamespace(sessions=self.sessions, sources=self.archives)
        return SimpleNamespace(runtime=runtime, strikes=Strikes(), extras={})

    async def measure(self, repeat: int) -> dict[str, tuple[float, str]]:
        """Median ms and a note for every timed operation."""
        s, src = self.sessions, list(SOURCES)
        out: dict[str, tuple[float, str]] = {}

        async def timed(key: str, fn: Timed, note: Callable[[Any], str]) -> Any:
            ms, value = await median_ms(fn, repeat)
            out[key] = (ms, note(value))
            log(f"  {key}: {ms:.1f} ms {out[key][1]}")
            return value

        first = await timed("patient_page", lambda: store.patient_page(s, src, 50, None), _ids_note)
        await timed(
            "patient_page next",
            lambda: store.patient_page(s, src, 50, first.patient_ids[-1]),
            _ids_note,
        )
        deep = Model.patient_id(self.model.patients * 2 // 3)
        await timed("patient_page deep", lambda: store.patient_page(s, src, 50, deep), _ids_note)
        sp = await timed("study_page", lambda: store.study_page(s, src, 50, None), _keys_note)
        await timed(
            "study_page next", lambda: store.study_page(s, src, 50, sp.keys[-1]), _keys_note
        )
        middle = ("20120101", "120000", "")
        await timed("study_page deep", lambda: store.study_page(s, src, 50, middle), _keys_note)
        await timed(
            "name page M*", lambda: store.patient_page(s, src, 50, None, name="M"), _ids_note
        )
        rare = RARE
        await timed(
            f"name page {rare}*",
            lambda: store.patient_page(s, src, 50, None, name=rare),
            _ids_note,
        )
        await timed(
            "patient_rows (INDEXED page)",
            lambda: self.rows(lambda c: indexed.patient_rows(c, src, [], 50, None, None)),
            _rows_note,
        )
        await timed(
            "patient_rows next",
            lambda: self.rows(
                lambda c: indexed.patient_rows(c, src, [], 50, first.patient_ids[-1], None)
            ),
            _rows_note,
        )
        await timed(
            "patient_rows M*",
            lambda: self.rows(lambda c: indexed.patient_rows(c, src, [], 50, None, "M")),
            _rows_note,
        )
        await timed(
            "study_rows (INDEXED page)",
            lambda: self.rows(lambda c: indexed.study_rows(c, src, [], 50, None)),
            _rows_note,
        )
        await timed(
            "study_rows next",
            lambda: self.rows(lambda c: indexed.study_rows(c, src, [], 50, sp.keys[-1])),
            _rows_note,
        )
        await timed(
            "save_state (each refresh: the count is kept by the writes)",
            lambda: store.save_state(s, "main", refreshed_at=datetime.now(UTC)),
            lambda _: "main",
        )
        counts: dict[str, Timed] = {
            "totalCount patients (count_patients, once)": lambda: store.count_patients(s, src),
            "totalCount studies (count_studies, once)": lambda: store.count_studies(s, src),
            "the same, patients counted from the rows (once)": lambda: self.distinct("patient_id"),
            "the same, studies counted from the rows (once)": lambda: self.distinct("study_uid"),
        }
        for name in ("M", RARE):  # a name total: counted, or estimated over many rows
            counts[f"totalCount patients {name}* (total_patients, once)"] = partial(
                store.total_patients, s, src, name
            )
            counts[f"the same, {name}* counted (once)"] = partial(
                store.count_patients, s, src, name
            )
        for key, fn in counts.items():
            start = time.perf_counter()
            n = await fn()
            shown = (
                f"{n.n:,} {'estimated' if n.estimated else 'exact'}"
                if isinstance(n, store.Total)
                else f"{n:,}"
            )
            out[key] = ((time.perf_counter() - start) * 1000, shown)
            log(f"  {key}: {out[key][0]:.1f} ms {out[key][1]}")
        return out

    async def distinct(self, column: str) -> int:
        """Distinct keys read from every row: how totals were counted before index_counts."""
        async with self.engine.connect() as conn:
            return int(
                (
                    await conn.execute(text(f"SELECT count(DISTINCT {column}) FROM index_studies"))
                ).scalar()
                or 0
            )

    async def rows(self, fn: Callable[[Any], Awaitable[Any]]) -> tuple[Any, dict[str, int], int]:
        """One resolver page; (its value, requests per archive, SQL statements)."""
        before = {k: a.stats.calls for k, a in self.archives.items()}
        self.sql = []
        try:
            value = await fn(self.ctx())
        finally:
            sql, self.sql = self.sql, None
        calls = {k: a.stats.calls - before[k] for k, a in self.archives.items()}
        return value, calls, len(sql)

    async def explain(self, lines: list[str]) -> None:
        """EXPLAIN (ANALYZE, BUFFERS) of each statement of the store's page functions."""
        s, src = self.sessions, list(SOURCES)
        first = await store.patient_page(s, src, 50, None)
        sp = await store.study_page(s, src, 50, None)
        calls: dict[str, Timed] = {
            "patient_page": lambda: store.patient_page(s, src, 50, None),
            "patient_page next": lambda: store.patient_page(s, src, 50, first.patient_ids[-1]),
            "study_page": lambda: store.study_page(s, src, 50, None),
            "study_page next": lambda: store.study_page(s, src, 50, sp.keys[-1]),
            "name page M*": lambda: store.patient_page(s, src, 50, None, name="M"),
            "name page rare": lambda: store.patient_page(s, src, 50, None, name=RARE),
            "patient_rows": lambda: indexed.patient_rows(self.ctx(), src, [], 50, None, None),
            "study_rows next": lambda: indexed.study_rows(self.ctx(), src, [], 50, sp.keys[-1]),
        }
        for label, fn in calls.items():
            self.sql = []
            try:
                await fn()
            finally:
                sql, self.sql = self.sql, None
            lines.append(f"### {label}, {self.model.studies:,} studies: {len(sql)} statements\n")
            async with self.engine.connect() as conn:
                for statement, params, ms in sql:
                    if not statement.lstrip().upper().startswith("SELECT"):
                        continue
                    plan = await conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, tuple(params or ())
                    )
                    lines.append(f"-- {ms:.1f} ms\n{statement}\n")
                    lines.extend(f"    {row[0]}" for row in plan)
                    lines.append("")


def _ids_note(page: store.PatientPage) -> str:
    return f"{len(page.patient_ids)} ids, more: {page.has_next}"


def _keys_note(page: store.StudyPage) -> str:
    return f"{len(page.keys)} studies, more: {page.has_next}"


def _rows_note(value: tuple[Any, dict[str, int], int]) -> str:
    result, calls, sql = value
    outcomes = result[-2] if isinstance(result[-1], dict) else result[-1]
    failed = [f"{o.source}: {o.error}" for o in outcomes if not o.ok]
    if not result[0] or failed:  # a page of nothing measures nothing
        raise SystemExit(f"an INDEXED page came back empty or failed: {failed}")
    requests = ", ".join(f"{k} {n}" for k, n in calls.items())
    return f"{len(result[0])} rows; requests {requests}; {sql} SQL statements"


async def prepare(sim: Sim, keep: bool, check_build: bool) -> dict[str, float]:
    """Load the size's database unless a kept one holds the rows already."""
    info: dict[str, float] = {}
    await migrate(sim.url)
    have = await rows_in(sim.engine)
    if keep and have > 0:
        log(f"{sim.model.studies:,} studies: kept database, {have:,} rows")
    else:
        log(f"loading {sim.model.studies:,} studies of {sim.model.patients:,} patients")
        info |= await load(sim.engine, sim.model)
    await mark_built(sim.sessions)
    info["rows"] = float(await rows_in(sim.engine))
    if check_build:
        info |= await build_check(sim)
    async with sim.engine.connect() as conn:
        size = await conn.execute(text("SELECT pg_total_relation_size('index_studies')"))
        info["bytes"] = float(size.scalar() or 0)
    return info


async def build_check(sim: Sim) -> dict[str, float]:
    """Build the index again through `build` (rate), then check it equals the bulk load."""
    async with sim.engine.connect() as conn:
        before = (
            await conn.execute(
                text(
                    "SELECT md5(string_agg(source || study_uid || patient_id || name_key "
                    "|| study_date || study_time || coalesce(birth_date, '') || modalities, "
                    "',' ORDER BY source, study_uid)) FROM index_studies"
                )
            )
        ).scalar()
    start = time.perf_counter()
    built = 0
    for source in SOURCES:
        done = await build(sim.sessions, sim.archives[source])
        built += done.upserted
    seconds = time.perf_counter() - start
    async with sim.engine.connect() as conn:
        after = (
            await conn.execute(
                text(
                    "SELECT md5(string_agg(source || study_uid || patient_id || name_key "
                    "|| study_date || study_time || coalesce(birth_date, '') || modalities, "
                    "',' ORDER BY source, study_uid)) FROM index_studies"
                )
            )
        ).scalar()
    assert before == after, "the bulk load and build() wrote different rows"
    log(f"build(): {built:,} rows in {seconds:.1f}s ({built / seconds:.0f}/s), same rows")
    async with sim.engine.begin() as conn:  # again into an empty index: every row new
        await conn.execute(text("TRUNCATE index_studies, index_counts"))
    start = time.perf_counter()
    for source in SOURCES:
        await build(sim.sessions, sim.archives[source])
    empty_s = time.perf_counter() - start
    await vacuum(sim.engine)
    for kind, column in (("study", "study_uid"), ("patient", "patient_id")):
        kept = await (store.count_studies if kind == "study" else store.count_patients)(
            sim.sessions, list(SOURCES)
        )
        assert kept == await sim.distinct(column), f"{kind} totals kept wrong by build()"
    log(f"build() into an empty index: {built / empty_s:.0f}/s, totals as counted")
    return {"build_rows": float(built), "build_s": seconds, "empty_s": empty_s}


async def main(args: argparse.Namespace) -> None:
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    server = server.replace("+asyncpg", "")
    small_patients = max(1, round(args.small * args.patients / args.studies))
    sizes = [(args.small, small_patients), (args.studies, args.patients)]
    results: dict[int, dict[str, tuple[float, str]]] = {}
    infos: dict[int, dict[str, float]] = {}
    sims: list[Sim] = []
    try:
        for n_studies, n_patients in sizes:
            name = f"pacs_gw_sim_index_{n_studies}_{n_patients}"
            keep = args.keep and await asyncio.to_thread(exists, server, name)
            url = await asyncio.to_thread(database, server, name, not keep)
            sim = Sim(n_studies, n_patients, url.replace("postgresql://", "postgresql+asyncpg://"))
            sims.append(sim)
            infos[n_studies] = await prepare(sim, args.keep, check_build=n_studies <= 100_000)
        for sim in sims:
            log(f"timing at {sim.model.studies:,} studies")
            results[sim.model.studies] = await sim.measure(args.repeat)
        if args.explain:
            lines: list[str] = []
            for sim in sims:
                await sim.explain(lines)
            await asyncio.to_thread(_write, args.explain, "\n".join(lines))
        report(sims, infos, results, args.repeat)
    finally:
        for sim in sims:
            await sim.engine.dispose()
            if not args.keep:
                drop(sim.url.replace("+asyncpg", ""))


def _write(path: str, body: str) -> None:
    with open(path, "w") as f:
        f.write(body)


def report(
    sims: list[Sim],
    infos: dict[int, dict[str, float]],
    results: dict[int, dict[str, tuple[float, str]]],
    repeat: int,
) -> None:
    small, large = sims[0].model.studies, sims[-1].model.studies
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nDate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average now {load}\n")
    print("| studies | patients | index rows | table + indexes | load (s) | build() rate |")
    print("|---:|---:|---:|---:|---|---|")
    for sim in sims:
        i = infos[sim.model.studies]
        loaded = (
            f"insert {i['insert_s']:.0f}, indexes {i['index_s']:.0f}, "
            f"counts {i['counts_s']:.0f}, analyze {i['analyze_s']:.0f}"
            if "insert_s" in i
            else "kept"
        )
        rate = (
            f"{i['build_rows'] / i['build_s']:.0f} rows/s over the same rows, "
            f"{i['build_rows'] / i['empty_s']:.0f} into an empty index"
            if "build_s" in i
            else "-"
        )
        print(
            f"| {sim.model.studies:,} | {sim.model.patients:,} | {int(i['rows']):,} | "
            f"{i['bytes'] / 2**30:.2f} GiB | {loaded} | {rate} |"
        )
    print(f"\nMedian of {repeat} after one warm-up (ms):\n")
    print(f"| operation | {small:,} studies | {large:,} studies | ratio | at the large size |")
    print("|---|---:|---:|---:|---|")
    for key, (ms_large, note) in results[large].items():
        ms_small = results[small][key][0]
        print(
            f"| {key} | {ms_small:.1f} | {ms_large:.1f} | **{ms_large / ms_small:.2f}** | {note} |"
        )


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    # defaults: 10^7 index rows (1.8 archive copies per study) of 10^6 patients, and 10^4 rows
    parser.add_argument("--studies", type=int, default=5_555_556, help="distinct studies")
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=5_556, help="studies at the small size")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--explain", help="write EXPLAIN ANALYZE of the page queries here")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
