"""Pages at hospital scale (issue 17): page times against archive size, on the real local stack.

    .venv/bin/python -m tests.bench.bench_index --small 500 --large 20000 [--repeat 5]
        [--burst 1000] [--workdir /dev/shm/pacs-bench-index] [--keep] [--explain FILE]

Starts two local stacks (Orthanc REST "orthanc" and the DICOMweb archive "dcm4chee"; the
DIMSE archive is left out, dcmqrscp holds at most 500 studies), each with its own
database, seeds one with `--small` and one with `--large` patients (the demo seeder,
seed 42, two archives), builds the key index of every query source
(`gateway.index.refresh.build`, timed: the build rate) and times GraphQL pages through
the gateway app (in-process, HTTP/ASGI; `[auth] mode = "open"`), both sizes alternating,
one warm-up then the median of `--repeat`:

- `patients(first: 50)` (no totalCount), the next page by cursor, `studies(first: 50)`,
  `patients(first: 50, filter: {name: "M*"})`, each with `consistency: INDEXED` and LIVE;
- for one page of each: upstream requests per archive (the adapters' `stats.calls`), the
  SQL statements and their time, the archives' time;
- index lag after a burst: `--burst` new one-instance studies stored into each archive,
  then `refresh` in a loop until the index holds all of them (wall time, refresh calls).

The gateway keeps the configured source timeouts (5 s); seeding and the index build use
300 s. The stacks live under `--workdir` (tmpfs by default: Orthanc ingests about five
times faster there than on this machine's shared disk); `--keep` leaves stacks and
databases for another run, which then skips the seeding. `--explain FILE` writes
PostgreSQL's EXPLAIN (ANALYZE, BUFFERS) of every statement of one INDEXED page of each
query at the large size. Not a pytest test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, func, select

from gateway.core.errors import SourceError
from gateway.core.settings import Settings, load_settings
from gateway.db.models import IndexedStudy
from gateway.devstack.seed import build_demo
from gateway.devstack.seed.images import iter_series
from gateway.devstack.seed.model import CT_IMAGE, CopySpec, PatientSpec, SeriesSpec, StudySpec
from gateway.devstack.seed.uids import derive_uid
from gateway.devstack.stack import LocalStack, StackInfo
from gateway.index.refresh import build, refresh
from gateway.runtime import Runtime
from gateway.server.app import create_app
from gateway.sources.base import PacsSource, StudyQuery
from tests.jobs_support import drop_database

ARCHIVES = ("orthanc", "dcm4chee")  # mirror, main: the seeder's placement by position
BUILD_TIMEOUT_S = 300.0
PAGE = 50

PATIENTS = """query($f: PatientFilter, $after: String, $c: Consistency) {
  patients(filter: $f, first: 50, after: $after, consistency: $c) {
    pageInfo { hasNextPage endCursor }
    sourceResults { source { id } status latencyMs count consistency }
    edges { cursor node { patientId name birthDate sex presentIn { id } missingFrom { id }
      conflicts { field values { source { id } value } } } }
  }
}"""

STUDIES = """query($c: Consistency) {
  studies(first: 50, consistency: $c) {
    pageInfo { hasNextPage endCursor }
    sourceResults { source { id } status latencyMs count consistency }
    edges { cursor node { studyInstanceUid patientId studyDate description accessionNumber
      modalities presentIn { id } missingFrom { id } counts { source { id } series instances }
      conflicts { field values { source { id } value } } } }
  }
}"""


@dataclasses.dataclass
class Case:
    """One timed page: its label, GraphQL document and variables (cursor filled per size)."""

    key: str
    label: str
    query: str
    variables: dict[str, Any]
    next_of: str | None = None  # the case whose endCursor this page starts after


@dataclasses.dataclass
class Size:
    """One stack, seeded with `patients`, with the gateway app in front of it."""

    patients: int
    info: StackInfo
    stack: LocalStack
    settings: Settings  # the gateway's (configured timeouts)
    slow: Settings  # seeding and index build (long timeouts)
    held: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    runtime: Runtime | None = None
    client: httpx.AsyncClient | None = None
    cursors: dict[str, str | None] = dataclasses.field(default_factory=dict)
    sql: list[tuple[str, Any, float]] | None = None  # statements while capturing


def log(*parts: object) -> None:
    """Progress on stderr (stdout is the report)."""
    print(*parts, file=sys.stderr, flush=True)


# -- stacks ---------------------------------------------------------------------------------


def start_size(base: Path, patients: int) -> Size:
    """A stack of its own (workdir under `base`, database `pacs_gw_bench_index_<n>`)."""
    stack = LocalStack(
        workdir=base / f"p{patients}", database_name=f"pacs_gw_bench_index_{patients}"
    )
    info = stack.start()
    path = info.workdir / "gateway.toml"
    path.write_text(info.gateway_toml(results_dir=str(info.workdir / "results"), auth_mode="open"))
    env = {"DATABASE_URL": info.database_url, "REDIS_URL": info.redis_url}
    settings = load_settings(path, env=env)
    sources = tuple(s for s in settings.sources if s.id in ARCHIVES)
    settings = dataclasses.replace(settings, sources=sources)
    slow = dataclasses.replace(
        settings,
        sources=tuple(
            dataclasses.replace(s, timeout_s=BUILD_TIMEOUT_S, breaker_threshold=1000)
            for s in sources
        ),
    )
    return Size(patients, info, stack, settings, slow)


# -- seeding --------------------------------------------------------------------------------


async def seed(size: Size) -> float:
    """Seed `size.patients` with the demo seeder (seed 42) unless a kept stack has them."""
    marker = size.info.workdir / "seeded.json"
    plan = build_demo(seed=42, patients=size.patients, sources=ARCHIVES)
    truth = plan.truth
    size.held = {
        s: {
            "patients": sum(1 for p in truth.patients if s in p.sources),
            "studies": sum(1 for st in truth.studies if s in st.sources),
            "instances": truth.instance_counts[s],
        }
        for s in ARCHIVES
    }
    if marker.exists() and json.loads(marker.read_text()).get("patients") == size.patients:
        log(f"p{size.patients}: already seeded (kept stack), {await delete_bursts(size)} left over")
        return float(json.loads(marker.read_text())["seconds"])
    runtime = await Runtime.create(size.slow)
    start = time.perf_counter()
    try:
        await asyncio.gather(
            *(_load(size.patients, s, plan.iter_files(s), runtime.sources[s]) for s in ARCHIVES)
        )
    finally:
        await runtime.aclose()
    seconds = time.perf_counter() - start
    marker.write_text(json.dumps({"patients": size.patients, "seconds": seconds}))
    return seconds


async def _load(n: int, sid: str, files: Iterator[bytes], source: PacsSource) -> None:
    """Store the seeder's files in batches, a batch retried on a transient failure."""
    done, last = 0, time.perf_counter()
    while chunk := await asyncio.to_thread(lambda: list(islice(files, 64))):
        for attempt in range(5):
            try:
                result = await source.store(chunk)
            except SourceError as exc:
                if attempt == 4:
                    raise
                log(f"p{n} {sid}: store failed ({exc}), retrying")
                await asyncio.sleep(1 + attempt)
                continue
            if result.failed and attempt < 4:
                continue
            assert not result.failed, f"{sid}: {len(result.failed)} refused"
            break
        done += len(chunk)
        if time.perf_counter() - last > 30:
            log(f"p{n} {sid}: {done} instances stored")
            last = time.perf_counter()


# -- index ----------------------------------------------------------------------------------


async def build_index(size: Size) -> dict[str, dict[str, float]]:
    """Build every archive's index (long timeouts); studies, seconds, rate and the listing."""
    runtime = await Runtime.create(size.slow)
    out: dict[str, dict[str, float]] = {}
    try:
        for sid in ARCHIVES:
            marks: dict[str, float] = {}

            async def progress(
                fraction: float, phase: str, marks: dict[str, float] = marks
            ) -> None:
                marks.setdefault(phase, time.perf_counter())

            source = runtime.sources[sid]
            calls = source.stats.calls
            start = time.perf_counter()
            done = await build(runtime.sessions, source, progress)
            seconds = time.perf_counter() - start
            listing = marks.get("writing", time.perf_counter()) - start
            out[sid] = {
                "studies": done.upserted,
                "seconds": seconds,
                "rate": done.upserted / seconds,
                "listing_s": listing,
                "writing_s": seconds - listing,
                "requests": source.stats.calls - calls,
            }
            log(f"p{size.patients} {sid}: {done.upserted} studies indexed in {seconds:.1f}s")
    finally:
        await runtime.aclose()
    return out


async def refresh_all(runtime: Runtime) -> None:
    """One refresh of every archive's index (what the workers do every index_interval_s)."""
    for sid in ARCHIVES:
        await refresh(runtime.sessions, runtime.sources[sid])


def burst_files(n: int, nonce: str, sid: str) -> tuple[list[str], list[bytes]]:
    """`n` new one-instance CT studies dated today, one patient each; (UIDs, Part 10 files)."""
    today = datetime.now(UTC).strftime("%Y%m%d")
    uids: list[str] = []
    files: list[bytes] = []
    for k in range(n):
        patient = PatientSpec(f"BURST-{nonce}-{sid}-{k:05d}", "BURST^STUDY", "19700101", "O")
        series = SeriesSpec(
            series_uid=derive_uid(7, nonce, sid, k, "series"),
            modality="CT",
            number=1,
            description="BURST",
            sop_class_uid=CT_IMAGE,
            instance_uids=(derive_uid(7, nonce, sid, k, "sop"),),
            rows=16,
            columns=16,
        )
        study = StudySpec(
            study_uid=derive_uid(7, nonce, sid, k, "study"),
            patient=patient,
            study_id="1",
            date=today,
            time=f"{k // 3600 % 24:02d}{k // 60 % 60:02d}{k % 60:02d}",
            accession=f"B{k:06d}",
            description="BURST",
            alt_descriptions=(),
            body_part="CHEST",
            referring="",
            manufacturer="SYNTH",
            frame_uid=derive_uid(7, nonce, sid, k, "frame"),
            series=[series],
        )
        uids.append(study.study_uid)
        files.extend(iter_series(study, CopySpec(), series))
    return uids, files


async def indexed_count(runtime: Runtime, sid: str, uids: list[str]) -> int:
    """How many of `uids` the index holds for `sid`."""
    async with runtime.sessions() as session:
        query = select(func.count()).where(
            IndexedStudy.source == sid, IndexedStudy.study_uid.in_(uids)
        )
        return int(await session.scalar(query) or 0)


async def delete_bursts(size: Size) -> int:
    """Delete the studies a burst stored (patient IDs `BURST-*`) from both archives."""
    gone = 0
    for root in (size.info.orthanc_url, size.info.dcm4chee_rest):
        async with httpx.AsyncClient(base_url=root, timeout=300) as http:
            body = {"Level": "Study", "Query": {"PatientID": "BURST-*"}}
            ids = (await http.post("/tools/find", json=body)).json()
            for orthanc_id in ids:
                (await http.delete(f"/studies/{orthanc_id}")).raise_for_status()
            gone += len(ids)
    return gone


STALL_S = 60.0  # a burst not fully indexed after this long without progress: report it


async def burst_lag(size: Size, n: int) -> dict[str, dict[str, float]]:
    """Store `n` new studies into each archive, then refresh until all are indexed (or no
    progress for STALL_S: then how many are missing, and whether the archive holds them)."""
    runtime = await Runtime.create(size.slow)
    nonce = datetime.now(UTC).strftime("%H%M%S")
    out: dict[str, dict[str, float]] = {}
    try:
        for sid in ARCHIVES:
            source = runtime.sources[sid]
            windows = trace_feed(source)
            uids, files = await asyncio.to_thread(burst_files, n, nonce, sid)
            start = time.perf_counter()
            result = await source.store(files)
            assert not result.failed
            stored = time.perf_counter()
            calls = source.stats.calls
            rounds: list[float] = []
            done, progress_at = 0, stored
            while done < n and time.perf_counter() - progress_at < STALL_S:
                t = time.perf_counter()
                await refresh(runtime.sessions, source)
                rounds.append(time.perf_counter() - t)
                if (now := await indexed_count(runtime, sid, uids)) > done:
                    done, progress_at = now, time.perf_counter()
            out[sid] = {
                "store_s": stored - start,
                "lag_s": progress_at - stored,
                "refreshes": len(rounds),
                "refresh_s": max(rounds),
                "requests": source.stats.calls - calls,
                "indexed": done,
            }
            if done < n:
                out[sid] |= await why_missing(size, runtime, sid, uids, windows)
            log(f"p{size.patients} {sid}: burst of {n}: {out[sid]}")
    finally:
        await runtime.aclose()
        log(f"p{size.patients}: {await delete_bursts(size)} burst studies deleted again")
    return out


def trace_feed(source: PacsSource) -> list[tuple[str | None, str, int]]:
    """Record each change-feed read of `source`: (cursor, next cursor, study UIDs named)."""
    windows: list[tuple[str | None, str, int]] = []
    original = getattr(source, "study_changes", None)
    if original is None:
        return windows

    async def traced(cursor: str | None) -> tuple[list[str], str]:
        uids, end = await original(cursor)
        windows.append((cursor, end, len(uids)))
        return uids, end

    source.study_changes = traced  # type: ignore[attr-defined]
    return windows


async def why_missing(
    size: Size,
    runtime: Runtime,
    sid: str,
    uids: list[str],
    windows: list[tuple[str | None, str, int]],
) -> dict[str, float]:
    """For a burst not fully indexed: does the archive hold the rest, and did the feed name
    every study it changed (Orthanc: the study-level changes in each window read)?"""
    async with runtime.sessions() as session:
        query = select(IndexedStudy.study_uid).where(
            IndexedStudy.source == sid, IndexedStudy.study_uid.in_(uids)
        )
        have = set((await session.scalars(query)).all())
    missing = [u for u in uids if u not in have]
    held = await runtime.sources[sid].find_studies(StudyQuery(study_uids=tuple(missing)))
    extra = {"missing": float(len(missing)), "missing_held": float(len(held))}
    if windows:
        root = size.info.orthanc_url if sid == "orthanc" else size.info.dcm4chee_rest
        changed = 0
        async with httpx.AsyncClient(base_url=root, timeout=60) as http:
            for since, end, _ in windows:
                if since is None:
                    continue
                ids: set[str] = set()
                at = int(since)
                while at < int(end):
                    body = (await http.get(f"/changes?since={at}&limit=1000")).json()
                    for c in body["Changes"]:
                        if c["Seq"] <= int(end) and c["ResourceType"] == "Study":
                            if c["ChangeType"] in ("NewStudy", "StableStudy"):
                                ids.add(c["ID"])
                    at = int(body["Last"])
                    if body["Done"]:
                        break
                changed += len(ids)
        extra["feed_study_ids"] = float(changed)
        extra["feed_uids_named"] = float(sum(k for *_, k in windows))
    log(f"p{size.patients} {sid}: {len(missing)} burst studies not indexed: {extra}")
    return extra


# -- pages ----------------------------------------------------------------------------------


async def open_gateway(size: Size) -> None:
    """The gateway app over this stack, with SQL capture on its engine."""
    app = create_app(size.settings)
    runtime = await Runtime.create(size.settings)
    app.state.runtime = runtime  # what the lifespan does; ASGITransport runs no lifespan
    size.runtime = runtime
    size.client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1", timeout=120
    )
    engine = runtime.engine.sync_engine

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):  # type: ignore[no-untyped-def]
        conn.info["bench_t"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):  # type: ignore[no-untyped-def]
        if size.sql is not None:
            ms = (time.perf_counter() - conn.info.pop("bench_t", time.perf_counter())) * 1000
            size.sql.append((statement, params, ms))


async def close_gateway(size: Size) -> None:
    """Close the client and the runtime."""
    if size.client is not None:
        await size.client.aclose()
    if size.runtime is not None:
        await size.runtime.aclose()


def reset_breakers(runtime: Runtime) -> None:
    """Close every circuit: a LIVE timeout must not turn the next run into a fast refusal."""
    for source in runtime.sources.values():
        guard = getattr(source, "guard", None)
        if guard is not None:
            guard.breaker.success()


@dataclasses.dataclass
class Sample:
    """One page through the gateway."""

    ms: float
    statuses: dict[str, str]
    consistency: set[str]
    edges: int
    end_cursor: str | None
    first: str | None


async def page(size: Size, case: Case, mode: str) -> Sample:
    """Send one page request; its wall time and what the sources did."""
    assert size.client is not None and size.runtime is not None
    variables = dict(case.variables, c=mode)
    if case.next_of is not None:
        variables["after"] = size.cursors[f"{case.next_of}:{mode}"]
    reset_breakers(size.runtime)
    start = time.perf_counter()
    r = await size.client.post("/graphql", json={"query": case.query, "variables": variables})
    ms = (time.perf_counter() - start) * 1000
    body = r.json()
    assert r.status_code == 200 and not body.get("errors"), str(body)[:800]
    data = next(iter(body["data"].values()))
    results = data["sourceResults"]
    edges = data["edges"]
    return Sample(
        ms,
        {x["source"]["id"]: x["status"] for x in results},
        {str(x["consistency"]) for x in results},
        len(edges),
        data["pageInfo"]["endCursor"],
        (edges[0]["node"].get("patientId") or edges[0]["node"].get("studyInstanceUid"))
        if edges
        else None,
    )


@dataclasses.dataclass
class Probe:
    """One page with its upstream requests and SQL counted."""

    ms: float
    calls: dict[str, int]
    operations: dict[str, dict[str, int]]
    archive_ms: dict[str, float]
    sql: list[tuple[str, Any, float]]


async def probe(size: Size, case: Case, mode: str) -> Probe:
    """One page, counting each archive's upstream calls and the SQL it ran."""
    assert size.runtime is not None
    sources = size.runtime.sources
    before = {s: (src.stats.calls, dict(src.stats.by_operation)) for s, src in sources.items()}
    recent = {s: len(src.stats.recent_ms) for s, src in sources.items()}
    size.sql = []
    try:
        sample = await page(size, case, mode)
    finally:
        sql, size.sql = size.sql, None
    calls = {s: src.stats.calls - before[s][0] for s, src in sources.items()}
    ops = {
        s: {
            op: n - before[s][1].get(op, 0)
            for op, n in src.stats.by_operation.items()
            if n != before[s][1].get(op, 0)
        }
        for s, src in sources.items()
    }
    archive_ms = {}
    for s, src in sources.items():
        values = list(src.stats.recent_ms)
        new = calls[s] if len(values) == src.stats.recent_ms.maxlen else len(values) - recent[s]
        archive_ms[s] = sum(values[len(values) - new :]) if new else 0.0
    return Probe(sample.ms, calls, ops, archive_ms, sql or [])


CASES = [
    Case("p1", "`patients(first: 50)`", PATIENTS, {}),
    Case("p2", "next page (`after:` its endCursor)", PATIENTS, {}, next_of="p1"),
    Case("s1", "`studies(first: 50)`", STUDIES, {}),
    Case("nm", '`patients(first: 50, filter: {name: "M*"})`', PATIENTS, {"f": {"name": "M*"}}),
]


@dataclasses.dataclass
class Result:
    """One case in one mode at every size."""

    case: Case
    mode: str
    samples: dict[int, list[Sample]]
    probes: dict[int, Probe]

    def median(self, n: int) -> float:
        return statistics.median(s.ms for s in self.samples[n])

    def statuses(self, n: int) -> str:
        bad = sorted(
            {f"{src} {st}" for s in self.samples[n] for src, st in s.statuses.items() if st != "OK"}
        )
        return ", ".join(bad)


async def measure(sizes: list[Size], mode: str, repeat: int) -> list[Result]:
    """Every case in `mode`, sizes alternating: warm-up, then `repeat` timed rounds."""
    out = []
    for case in CASES:
        samples: dict[int, list[Sample]] = {s.patients: [] for s in sizes}
        for size in sizes:
            assert size.runtime is not None
            if mode == "INDEXED":
                await refresh_all(size.runtime)
            warm = await page(size, case, mode)
            size.cursors[f"{case.key}:{mode}"] = warm.end_cursor
            log(f"p{size.patients} {case.key} {mode}: warm-up {warm.ms:.0f} ms {warm.statuses}")
        # INDEXED: sizes alternate. LIVE: one size after the other, since an archive goes on
        # with a listing the gateway gave up on (timeout) and would slow the other stack.
        rounds = (
            [sizes] * repeat
            if mode == "INDEXED"
            else [[size] for size in sizes for _ in range(repeat)]
        )
        for group in rounds:
            for size in group:
                sample = await page(size, case, mode)
                assert sample.consistency == {mode}, (case.key, mode, sample.consistency)
                samples[size.patients].append(sample)
        probes = {size.patients: await probe(size, case, mode) for size in sizes}
        result = Result(case, mode, samples, probes)
        for size in sizes:
            n = size.patients
            log(f"p{n} {case.key} {mode}: median {result.median(n):.0f} ms {result.statuses(n)}")
        out.append(result)
    return out


async def explain(size: Size, path: Path) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement of one INDEXED page of each case."""
    assert size.runtime is not None
    lines: list[str] = []
    for case in CASES:
        got = await probe(size, case, "INDEXED")
        lines.append(f"### {case.label} at {size.patients} patients: {len(got.sql)} statements\n")
        async with size.runtime.engine.connect() as conn:
            for statement, params, ms in got.sql:
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                plan = await conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement, tuple(params or ())
                )
                lines.append(f"-- {ms:.1f} ms in the page\n{statement}\n")
                lines.extend(f"    {row[0]}" for row in plan)
                lines.append("")
    await asyncio.to_thread(path.write_text, "\n".join(lines))
    log(f"EXPLAIN written to {path}")


# -- report ---------------------------------------------------------------------------------


def report(
    sizes: list[Size],
    seeded: dict[int, float],
    builds: dict[int, dict[str, dict[str, float]]],
    results: list[Result],
    lag: dict[str, dict[str, float]],
    repeat: int,
) -> None:
    small, large = sizes[0].patients, sizes[-1].patients
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nDate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average now {load}\n")
    print("| stack | archive | patients | studies | instances | seeding (s) |")
    print("|---|---|---:|---:|---:|---:|")
    for size in sizes:
        for sid in ARCHIVES:
            h = size.held[sid]
            print(
                f"| {size.patients} | {sid} | {h['patients']:,} | {h['studies']:,} | "
                f"{h['instances']:,} | {seeded[size.patients]:.0f} |"
            )
    print(f"\nPages, median of {repeat} after one warm-up (ms), sizes alternating:\n")
    print(f"| query | mode | {small} | {large} | ratio | not OK at {large} |")
    print("|---|---|---:|---:|---:|---|")
    for r in results:
        a, b = r.median(small), r.median(large)
        print(
            f"| {r.case.label} | {r.mode} | {a:.0f} | {b:.0f} | **{b / a:.2f}** | "
            f"{r.statuses(large) or '-'} |"
        )
    print("\nOne page each: upstream requests per archive (operations), archive and SQL time:\n")
    print(
        "| query | mode | patients | requests | archive ms (sum) | SQL stmts | SQL ms | page ms |"
    )
    print("|---|---|---:|---|---|---:|---:|---:|")
    for r in results:
        for n, p in r.probes.items():
            req = "; ".join(
                f"{s} {p.calls[s]} ({', '.join(f'{o} {k}' for o, k in p.operations[s].items())})"
                for s in p.calls
            )
            arch = ", ".join(f"{s} {ms:.0f}" for s, ms in p.archive_ms.items())
            sql_ms = sum(ms for *_, ms in p.sql)
            print(
                f"| {r.case.label} | {r.mode} | {n} | {req} | {arch} | {len(p.sql)} | "
                f"{sql_ms:.1f} | {p.ms:.0f} |"
            )
    print("\nIndex build (`gateway.index.refresh.build`, 300 s source timeouts):\n")
    print("| patients | archive | studies | listing (s) | writing (s) | total (s) | studies/s |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n, per in builds.items():
        for sid, b in per.items():
            print(
                f"| {n} | {sid} | {int(b['studies']):,} | {b['listing_s']:.1f} | "
                f"{b['writing_s']:.1f} | {b['seconds']:.1f} | {b['rate']:.0f} |"
            )
    if lag:
        print(f"\nIndex lag after a burst, at {large} patients:\n")
        print(
            "| archive | stored in (s) | indexed | lag after the store (s) | refreshes | requests |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for sid, v in lag.items():
            print(
                f"| {sid} | {v['store_s']:.1f} | {int(v['indexed'])} | {v['lag_s']:.2f} | "
                f"{int(v['refreshes'])} | {int(v['requests'])} |"
            )
            if "missing" in v:
                print(f"\n{sid}: not all indexed: {v}")


async def main(args: argparse.Namespace) -> None:
    base = Path(args.workdir)
    sizes: list[Size] = []
    try:
        for n in (args.small, args.large):
            sizes.append(start_size(base, n))
        seeded: dict[int, float] = {}
        for size in sizes:
            seeded[size.patients] = await seed(size)
            log(f"p{size.patients}: seeded in {seeded[size.patients]:.0f}s {size.held}")
        builds = {size.patients: await build_index(size) for size in sizes}
        for size in sizes:
            await open_gateway(size)
        results = await measure(sizes, "INDEXED", args.repeat)
        if args.explain:
            await explain(sizes[-1], Path(args.explain))
        if not args.no_live:
            results += await measure(sizes, "LIVE", args.repeat)
        for size in sizes:
            await close_gateway(size)
        await asyncio.sleep(30)  # the archives finish the listings LIVE gave up on
        lag = await burst_lag(sizes[-1], args.burst) if args.burst else {}
        report(sizes, seeded, builds, results, lag, args.repeat)
    finally:
        for size in sizes:
            with contextlib.suppress(Exception):
                await close_gateway(size)
            size.stack.stop()
            if not args.keep:
                drop_database(size.info.database_url, prefix="pacs_gw_bench_index_")
                shutil.rmtree(size.info.workdir, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--burst", type=int, default=1000)
    shm = Path("/dev/shm")
    default = shm if shm.is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
    parser.add_argument("--workdir", default=str(default / "pacs-bench-index"))
    parser.add_argument("--keep", action="store_true", help="keep stacks and databases")
    parser.add_argument("--explain", help="write EXPLAIN ANALYZE of the INDEXED pages here")
    parser.add_argument("--no-live", action="store_true", help="skip the LIVE comparison")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
