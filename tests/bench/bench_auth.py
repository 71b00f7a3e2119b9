"""Cost of identity and audit: the federated `patients(first: 500)` with a radiologist's API
token in `[auth] mode = "required"` against the same query in `mode = "open"`, same run,
same data; and `AuthService.authenticate` for a cached and an uncached token.

    .venv/bin/python -m tests.bench.bench_auth [--patients 1000] [--repeat 11] [--calls 2000]

Starts a LocalStack, seeds it (as `bench_federated` does), then alternates the query
through three in-process gateways on the same archives, database and Redis: `required`
(a radiologist's API token; every identity read audited, the `phi-read` events written
by the background writer during the run), `open` (no token; identity reads are audited in
open mode too, as the open caller) and, as a floor, `open` with the audit writer replaced
by a no-op (bench only: the product has no switch to turn auditing off). Medians of
`repeat` alternating runs (the order reversed every other round); the ratio is
required / open, as a ratio of medians and as the median of each round's own ratio
(steadier on a machine whose load changes). Not a pytest test.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import func, select

from gateway.auth.audit import Entry
from gateway.auth.service import AuthService
from gateway.core.enums import AuthMode, Role
from gateway.core.settings import Settings, load_settings
from gateway.db.engine import migrate
from gateway.db.models import AuditEvent
from gateway.devstack.seed import build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.devstack.stack import LocalStack
from gateway.runtime import Runtime
from gateway.server.app import create_app
from tests.bench.bench_federated import BENCH_TIMEOUT_S, PATIENTS

Call = Callable[[], Awaitable[None]]
FIRST = 500


@dataclasses.dataclass
class Gateway:
    """One in-process gateway: its runtime, client and the headers it sends."""

    label: str
    runtime: Runtime
    client: httpx.AsyncClient
    headers: dict[str, str]
    expected: int = FIRST  # patients on the page (fewer when fewer are seeded)

    async def query(self) -> None:
        """One `patients(first: 500)`; every archive must answer, 500 patients."""
        variables = {"first": FIRST}
        r = await self.client.post(
            "/graphql", json={"query": PATIENTS, "variables": variables}, headers=self.headers
        )
        body: dict[str, Any] = r.json()
        assert r.status_code == 200 and "errors" not in body, str(body)[:500]
        page = body["data"]["patients"]
        assert all(s["status"] == "OK" for s in page["sourceResults"]), page["sourceResults"]
        assert len(page["edges"]) == self.expected, len(page["edges"])


async def gateway(label: str, settings: Settings, headers: dict[str, str]) -> Gateway:
    """An app over its own runtime (what the lifespan does; ASGITransport runs none)."""
    app = create_app(settings)
    runtime = await Runtime.create(settings, run_migrations=False)
    app.state.runtime = runtime
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
    return Gateway(label, runtime, client, headers)


def _no_audit(entry: Entry) -> None:
    del entry


async def _timed(fn: Call) -> tuple[float, float]:
    """(wall, CPU of this process) in ms: the CPU is the gateway's own work (and the test
    client's), the archives run in processes of their own."""
    start, cpu = time.perf_counter(), time.process_time()
    await fn()
    return (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000


async def radiologist_token(auth: AuthService) -> tuple[str, str]:
    """(user id, API token) of a new radiologist."""
    user = await auth.create_user(f"bench-rad-{os.getpid()}", [Role.RADIOLOGIST], "bench")
    made = await auth.create_api_token(user.id, "bench", None, "bench")
    return user.id, made.token


async def time_authenticate(auth: AuthService, token: str, calls: int) -> dict[str, float]:
    """Median and 95th percentile (ms) of `authenticate`, cached and uncached."""
    assert await auth.authenticate(token) is not None  # verified once: now cached
    cached = []
    for _ in range(calls):
        start = time.perf_counter()
        principal = await auth.authenticate(token)
        cached.append((time.perf_counter() - start) * 1000)
        assert principal is not None
    uncached = []
    for _ in range(max(calls // 10, 20)):
        auth.forget()  # the next call verifies against the database
        start = time.perf_counter()
        principal = await auth.authenticate(token)
        uncached.append((time.perf_counter() - start) * 1000)
        assert principal is not None

    def p95(xs: list[float]) -> float:
        return statistics.quantiles(xs, n=20)[-1]

    return {
        "cached_median": statistics.median(cached),
        "cached_p95": p95(cached),
        "uncached_median": statistics.median(uncached),
        "uncached_p95": p95(uncached),
        "cached_n": len(cached),
        "uncached_n": len(uncached),
    }


async def audit_counts(runtime: Runtime, actors: list[str]) -> dict[str, int]:
    """`phi-read` events per actor."""
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(AuditEvent.actor, func.count())
            .where(AuditEvent.action == "phi-read", AuditEvent.actor.in_(actors))
            .group_by(AuditEvent.actor)
        )
        return {str(actor): int(n) for actor, n in rows}


async def run(settings: Settings, repeat: int, calls: int, expected: int) -> None:
    await migrate(settings.database_url)
    open_settings = dataclasses.replace(
        settings, auth=dataclasses.replace(settings.auth, mode=AuthMode.OPEN)
    )
    required_settings = dataclasses.replace(
        settings, auth=dataclasses.replace(settings.auth, mode=AuthMode.REQUIRED)
    )
    required = await gateway("required (radiologist token, audit on)", required_settings, {})
    user_id, token = await radiologist_token(required.runtime.auth)
    required.headers = {"Authorization": f"Bearer {token}"}
    opened = await gateway('open (`mode = "open"`, audit on)', open_settings, {})
    floor = await gateway("open, audit writer a no-op (floor)", open_settings, {})
    floor.runtime.audit.submit = _no_audit  # type: ignore[method-assign]
    gateways = [required, opened, floor]
    for g in gateways:
        g.expected = expected
    try:
        before = await audit_counts(required.runtime, [f"user:{user_id}", "user:open"])
        for g in gateways:  # warm-up: connections, capability probes, record caches
            await g.query()
            await g.query()
        samples: dict[str, list[float]] = {g.label: [] for g in gateways}
        cpu: dict[str, list[float]] = {g.label: [] for g in gateways}
        for i in range(repeat):
            order = gateways if i % 2 == 0 else gateways[::-1]
            for g in order:
                wall, used = await _timed(g.query)
                samples[g.label].append(wall)
                cpu[g.label].append(used)
        for g in gateways:
            await g.runtime.audit.flush()
        after = await audit_counts(required.runtime, [f"user:{user_id}", "user:open"])
        auth_times = await time_authenticate(required.runtime.auth, token, calls)
    finally:
        for g in gateways:
            await g.client.aclose()
            await g.runtime.aclose()

    med = {label: statistics.median(v) for label, v in samples.items()}
    ref = med[opened.label]
    # each round's own ratio (neighbouring runs share the machine's load of the moment)
    base = samples[opened.label]
    paired = {
        g.label: statistics.median(x / y for x, y in zip(samples[g.label], base, strict=True))
        for g in gateways
    }
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print(f"`patients(first: {FIRST})`, median of {repeat} alternating runs; load {load}")
    print()
    cpu_med = {label: statistics.median(v) for label, v in cpu.items()}
    print(
        "| gateway | median (ms) | min (ms) | max (ms) | ratio of medians | "
        "median of per-round ratios | gateway CPU median (ms) | CPU ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for g in gateways:
        xs = samples[g.label]
        print(
            f"| {g.label} | {med[g.label]:.1f} | {min(xs):.1f} | {max(xs):.1f} | "
            f"**{med[g.label] / ref:.3f}** | {paired[g.label]:.3f} | {cpu_med[g.label]:.1f} | "
            f"{cpu_med[g.label] / cpu_med[opened.label]:.3f} |"
        )
    for actor, label in ((f"user:{user_id}", "radiologist"), ("user:open", "open caller")):
        written = after.get(actor, 0) - before.get(actor, 0)
        print(f"phi-read events written during the run, {label}: {written}")
    print()
    print("| `AuthService.authenticate` | median (ms) | p95 (ms) | calls |")
    print("|---|---:|---:|---:|")
    print(
        f"| cached (verified token) | {auth_times['cached_median']:.4f} | "
        f"{auth_times['cached_p95']:.4f} | {auth_times['cached_n']:.0f} |"
    )
    print(
        f"| uncached (database: credential, user, last use) | "
        f"{auth_times['uncached_median']:.3f} | {auth_times['uncached_p95']:.3f} | "
        f"{auth_times['uncached_n']:.0f} |"
    )


async def main(patients: int, repeat: int, calls: int) -> None:
    stack = LocalStack()
    info = stack.start()
    try:
        path = info.workdir / "gateway.toml"
        path.write_text(info.gateway_toml(results_dir=str(info.workdir / "results")))
        env = {"DATABASE_URL": info.database_url, "REDIS_URL": info.redis_url}
        settings = load_settings(path, env=env)
        # a latency benchmark, not a fault test: dcmqrscp's 500-study C-FIND nears 5 s
        sources = tuple(dataclasses.replace(s, timeout_s=BENCH_TIMEOUT_S) for s in settings.sources)
        settings = dataclasses.replace(settings, sources=sources)
        start = time.perf_counter()
        counts = await seed_archives(settings, 42, patients, None)
        truth = build_demo(seed=42, patients=patients, sources=settings.ids_with_role("store"))
        assert counts == truth.truth.instance_counts, (counts, truth.truth.instance_counts)
        print(f"seeded {patients} patients ({counts}) in {time.perf_counter() - start:.0f}s")
        await run(settings, repeat, calls, min(FIRST, len(truth.truth.patients)))
    finally:
        stack.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--calls", type=int, default=2000, help="authenticate calls (cached)")
    args = parser.parse_args()
    asyncio.run(main(args.patients, args.repeat, args.calls))


if __name__ == "__main__":
    cli()
