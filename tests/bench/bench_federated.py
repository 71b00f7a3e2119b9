"""Federated read API latency against the slowest archive's own query, same run, same data.

    .venv/bin/python -m tests.bench.bench_federated [--patients 1000] [--repeat 11] [--profile]

Starts a LocalStack, seeds it with the demo seeder (`pacs-gateway seed`), then
times, alternating, each GraphQL query through the gateway app (HTTP in-process:
routing, strawberry, fan-out, merge, JSON) and the same query sent to every
archive directly through its adapter. The reference is the slowest archive's
median: the gateway cannot answer before its slowest archive has. Not a
pytest test. `--profile` writes a pyinstrument profile of the gateway queries.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.core.settings import Settings, load_settings
from gateway.devstack.seed import GroundTruth, build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.devstack.stack import LocalStack
from gateway.runtime import Runtime
from gateway.server.app import create_app
from gateway.sources.base import PacsSource, PatientQuery, StudyQuery
from gateway.sources.registry import build_source

Timed = Callable[[], Awaitable[Any]]
BENCH_TIMEOUT_S = 30.0

PATIENTS = """query($f: PatientFilter, $first: Int!) {
  patients(filter: $f, first: $first) {
    totalCount
    pageInfo { hasNextPage endCursor }
    sourceResults { source { id } status latencyMs count }
    edges { cursor node { patientId name birthDate sex presentIn { id } missingFrom { id }
      conflicts { field values { source { id } value } } } }
  }
}"""

STUDIES = """query($first: Int!) {
  studies(first: $first) {
    totalCount
    pageInfo { hasNextPage endCursor }
    sourceResults { source { id } status latencyMs count }
    edges { cursor node { studyInstanceUid patientId studyDate description accessionNumber
      modalities presentIn { id } missingFrom { id } counts { source { id } series instances }
      conflicts { field values { source { id } value } } } }
  }
}"""


@dataclass
class Case:
    """One benchmarked query: the GraphQL request and the same query per archive."""

    label: str
    query: str
    variables: dict[str, Any]
    direct: Callable[[PacsSource], Awaitable[list[Any]]]


@dataclass
class Row:
    """One line of the result table."""

    label: str
    gateway_ms: float
    per_source: dict[str, float]
    results: int

    def line(self) -> str:
        slowest = max(self.per_source, key=lambda s: self.per_source[s])
        ref = self.per_source[slowest]
        others = ", ".join(f"{s} {ms:.1f}" for s, ms in self.per_source.items())
        return (
            f"| {self.label} | {self.gateway_ms:.1f} | {slowest} {ref:.1f} | "
            f"**{self.gateway_ms / ref:.2f}** | {others} | {self.results} |"
        )


def name_prefix(truth: GroundTruth) -> str:
    """A family-name prefix (`Xy*`) matching about 50-100 patients."""
    counts = Counter(p.name[:2].upper() for p in truth.patients if p.name[:2].isascii())
    best = min(counts, key=lambda k: (abs(counts[k] - 75), k))
    return f"{best}*"


async def _ms(fn: Timed) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1000


async def measure(
    client: httpx.AsyncClient, sources: dict[str, PacsSource], case: Case, repeat: int
) -> Row:
    """Median of `repeat` alternating runs: gateway, then each archive directly."""

    async def gateway() -> dict[str, Any]:
        r = await client.post("/graphql", json={"query": case.query, "variables": case.variables})
        body: dict[str, Any] = r.json()
        assert r.status_code == 200 and "errors" not in body, str(body)[:500]
        return body

    calls: dict[str, Timed] = {"gateway": gateway}
    for sid, src in sources.items():
        calls[sid] = lambda src=src: case.direct(src)  # type: ignore[misc]
    for fn in calls.values():  # warm-up: connections, capability probes
        await fn()
    samples: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeat):
        for key, fn in calls.items():
            samples[key].append(await _ms(fn))
    body = await gateway()
    data = next(iter(body["data"].values()))
    assert all(r["status"] == "OK" for r in data["sourceResults"]), data["sourceResults"]
    med = {k: statistics.median(v) for k, v in samples.items()}
    per_source = {k: v for k, v in med.items() if k != "gateway"}
    return Row(case.label, med["gateway"], per_source, len(data["edges"]))


async def profile(client: httpx.AsyncClient, case: Case, runs: int, out: Path) -> None:
    """A pyinstrument profile of `runs` gateway requests, as text."""
    from pyinstrument import Profiler  # dev dependency, only for --profile

    profiler = Profiler(async_mode="enabled")
    with profiler:
        for _ in range(runs):
            await client.post("/graphql", json={"query": case.query, "variables": case.variables})
    text = profiler.output_text(unicode=False, show_all=False)
    await asyncio.to_thread(out.write_text, text)
    print(f"profile of {case.label}: {out}")


async def run(settings: Settings, truth: GroundTruth, repeat: int, prof: bool) -> list[Row]:
    app = create_app(settings)
    runtime = await Runtime.create(settings)
    app.state.runtime = runtime  # what the lifespan does; ASGITransport runs no lifespan
    direct = {s.id: build_source(s) for s in settings.sources if s.has_role("query")}
    prefix = name_prefix(truth)
    cases = [
        Case(
            f'`patients(first: 50, filter: {{name: "{prefix}"}})`',
            PATIENTS,
            {"first": 50, "f": {"name": prefix}},
            lambda s: s.find_patients(PatientQuery(name=prefix)),
        ),
        Case(
            "`patients(first: 500)`",
            PATIENTS,
            {"first": 500},
            lambda s: s.find_patients(PatientQuery()),
        ),
        Case(
            "`studies(first: 500)`",
            STUDIES,
            {"first": 500},
            lambda s: s.find_studies(StudyQuery()),
        ),
    ]
    transport = httpx.ASGITransport(app=app)
    rows = []
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            for case in cases:
                rows.append(await measure(client, direct, case, repeat))
                if prof:
                    name = case.label.split("(")[0].strip("`")
                    out = Path(tempfile.gettempdir()) / f"bench_federated_{name}_{len(rows)}.txt"
                    await profile(client, case, 5, out)
    finally:
        for s in direct.values():
            await s.aclose()
        await runtime.aclose()
    return rows


async def main(patients: int, repeat: int, prof: bool) -> None:
    stack = LocalStack()
    info = stack.start()
    try:
        path = info.workdir / "gateway.toml"
        path.write_text(
            info.gateway_toml(results_dir=str(info.workdir / "results"), auth_mode="open")
        )
        env = {"DATABASE_URL": info.database_url, "REDIS_URL": info.redis_url}
        settings = load_settings(path, env=env)
        # a latency benchmark, not a fault test: dcmqrscp's 500-study C-FIND nears 5 s
        sources = tuple(dataclasses.replace(s, timeout_s=BENCH_TIMEOUT_S) for s in settings.sources)
        settings = dataclasses.replace(settings, sources=sources)
        start = time.perf_counter()
        counts = await seed_archives(settings, 42, patients, None)
        ids = settings.ids_with_role("store")
        truth = build_demo(seed=42, patients=patients, sources=ids).truth
        assert counts == truth.instance_counts, (counts, truth.instance_counts)
        print(f"seeded {patients} patients ({counts}) in {time.perf_counter() - start:.0f}s")
        rows = await run(settings, truth, repeat, prof)
    finally:
        stack.stop()
    held = Counter(s for p in truth.patients for s in p.sources)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print(
        f"{patients} patients seeded (per archive: {dict(held)}), {len(truth.studies)} studies; "
        f"median of {repeat} alternating runs (ms); load average {load}"
    )
    print()
    print("| query | gateway | slowest archive direct | ratio | every archive direct | edges |")
    print("|---|---:|---:|---:|---|---:|")
    for row in rows:
        print(row.line())


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.patients, args.repeat, args.profile))


if __name__ == "__main__":
    cli()
