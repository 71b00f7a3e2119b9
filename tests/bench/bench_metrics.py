"""Cost of metrics and traces: the federated `patients(first: 500)` with metrics and traces
(to the SDK's in-memory exporter) on, metrics alone on, and both off; same run, same data,
alternating; and the time to render a scrape.

    .venv/bin/python -m tests.bench.bench_metrics [--patients 1000] [--repeat 15]

Starts a LocalStack, seeds it (as `bench_federated` does), then alternates the query
through three in-process gateways over the same archives, database and Redis: metrics
and traces on (every archive call timed through the Guard and spanned, the GraphQL
operation timed and spanned, errors counted; spans to an in-memory exporter), metrics on
with traces off, and `[metrics] enabled = false` with traces off (the recording calls
return at once, no span is made). Recording and tracing are switched per process, so they
are set before each run of each gateway. Medians of `repeat` rounds (the order reversed
every other round); each ratio is against "off", as a ratio of medians and as the median
of each round's own ratio (steadier on a machine whose load changes). Not a pytest test.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.core.enums import AuthMode
from gateway.core.settings import MetricsConfig, Settings, load_settings
from gateway.db.engine import migrate
from gateway.devstack.seed import build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.devstack.stack import LocalStack
from gateway.metrics import record, tracing
from gateway.metrics.expose import render
from tests.bench.bench_auth import FIRST, Gateway, _timed, gateway
from tests.bench.bench_federated import BENCH_TIMEOUT_S


async def run(settings: Settings, repeat: int, expected: int) -> None:
    await migrate(settings.database_url)
    # open mode, as bench_federated: identity has a benchmark of its own (bench_auth)
    settings = dataclasses.replace(
        settings, auth=dataclasses.replace(settings.auth, mode=AuthMode.OPEN)
    )
    metered = dataclasses.replace(settings, metrics=MetricsConfig(enabled=True))
    traced = await gateway("metrics and traces on", metered, {})
    on = await gateway("metrics on, traces off", metered, {})
    off = await gateway(
        "both off", dataclasses.replace(settings, metrics=MetricsConfig(enabled=False)), {}
    )
    gateways = [traced, on, off]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    switches = {traced.label: (True, provider), on.label: (True, None), off.label: (False, None)}

    async def query(g: Gateway) -> None:
        metrics_on, spans_to = switches[g.label]
        record.configure(metrics_on)
        tracing.use(spans_to)
        await g.query()

    for g in gateways:
        g.expected = expected
    try:
        for g in gateways:  # warm-up: connections, capability probes, record caches
            await query(g)
            await query(g)
        samples: dict[str, list[float]] = {g.label: [] for g in gateways}
        cpu: dict[str, list[float]] = {g.label: [] for g in gateways}
        for i in range(repeat):
            order = gateways if i % 2 == 0 else gateways[::-1]
            for g in order:
                wall, used = await _timed(lambda g=g: query(g))
                samples[g.label].append(wall)
                cpu[g.label].append(used)
        record.configure(True)
        tracing.use(None)
        spans = len(exporter.get_finished_spans())
        scrapes = []
        for _ in range(50):
            start = time.perf_counter()
            body, _ = render()
            scrapes.append((time.perf_counter() - start) * 1000)
        series = sum(1 for line in body.decode().splitlines() if not line.startswith("#"))
    finally:
        for g in gateways:
            await g.client.aclose()
            await g.runtime.aclose()

    med = {label: statistics.median(v) for label, v in samples.items()}
    cpu_med = {label: statistics.median(v) for label, v in cpu.items()}
    paired = {
        g.label: statistics.median(
            x / y for x, y in zip(samples[g.label], samples[off.label], strict=True)
        )
        for g in gateways
    }
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print(f"`patients(first: {FIRST})`, median of {repeat} alternating rounds; load {load}")
    print()
    print(
        "| gateway | median (ms) | min (ms) | max (ms) | ratio of medians | "
        "median of per-round ratios | gateway CPU median (ms) | CPU ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for g in gateways:
        xs = samples[g.label]
        print(
            f"| {g.label} | {med[g.label]:.1f} | {min(xs):.1f} | {max(xs):.1f} | "
            f"**{med[g.label] / med[off.label]:.3f}** | {paired[g.label]:.3f} | "
            f"{cpu_med[g.label]:.1f} | {cpu_med[g.label] / cpu_med[off.label]:.3f} |"
        )
    print()
    per_query = spans / max(1, len(samples[traced.label]) + 2)
    print(f"spans exported with traces on: {spans} ({per_query:.0f} per query)")
    print(
        f"rendering a scrape ({series} series): median {statistics.median(scrapes):.2f} ms, "
        f"max {max(scrapes):.2f} ms"
    )


async def main(patients: int, repeat: int) -> None:
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
        await run(settings, repeat, min(FIRST, len(truth.truth.patients)))
    finally:
        stack.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(main(args.patients, args.repeat))


if __name__ == "__main__":
    cli()
