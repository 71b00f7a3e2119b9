"""Event latency: a worker's publish to a subscribed GraphQL client, over a real WebSocket.

Run: `.venv/bin/python -m tests.bench.bench_events --events 500`

A gateway process serves `jobEvents`; this process publishes job events the
way workers do (`gateway.jobs.events.publish`) and receives them both through
the gateway's WebSocket and, as the reference, straight from Redis pub/sub.
Latency = receipt time - publish time, same clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import websockets

from gateway.core.settings import load_settings
from gateway.devstack.stack import LocalStack
from gateway.jobs.events import Event, publish
from gateway.runtime import Runtime
from tests.jobs_support import GatewayProcess

QUERY = "subscription { jobEvents { jobId progress message } }"


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(url: str, runtime: Runtime, events: int) -> tuple[list[float], list[float]]:
    sent: dict[str, float] = {}
    via_ws: list[float] = []
    via_redis: list[float] = []
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init"}))
        await ws.recv()
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": QUERY}}))
        await asyncio.sleep(0.5)
        direct = runtime.redis.pubsub(ignore_subscribe_messages=True)  # raw: the reference
        await direct.subscribe(runtime.keys.all_events)
        try:

            async def ws_reader() -> None:
                while len(via_ws) < events:
                    msg = json.loads(await ws.recv())
                    if msg["type"] == "next":
                        key = msg["payload"]["data"]["jobEvents"]["message"]
                        via_ws.append((time.perf_counter() - sent[key]) * 1000)

            async def redis_reader() -> None:
                while len(via_redis) < events:
                    msg = await direct.get_message(timeout=1.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    ev = Event.from_json(msg["data"])
                    if ev.message in sent:
                        via_redis.append((time.perf_counter() - sent[ev.message]) * 1000)

            readers = asyncio.gather(ws_reader(), redis_reader())
            for k in range(events):
                key = f"e{k}"
                ev = Event(
                    "bench", "SYNC", k, datetime.now(UTC), "RUNNING", k / events, "bench", key
                )
                sent[key] = time.perf_counter()
                await publish(runtime.redis, runtime.keys, ev)
                await asyncio.sleep(0.01)
            await asyncio.wait_for(readers, 30)
        finally:
            await direct.aclose()
    return via_ws, via_redis


async def main(events: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-events-"))
    stack = LocalStack(workdir=work, database_name="pacs_gateway_bench")
    info = stack.start()
    gateway = None
    try:
        config = work / "gateway.toml"
        config.write_text(info.gateway_toml(sync_interval_s=0, auth_mode="open"))
        env = {"DATABASE_URL": info.database_url, "REDIS_URL": info.redis_url}
        gateway = GatewayProcess(config, env, work / "gateway.log").start()
        runtime = await Runtime.create(load_settings(config, env=env))
        try:
            ws, direct = await measure(gateway.ws_url, runtime, events)
        finally:
            await runtime.aclose()
    finally:
        if gateway is not None:
            gateway.stop()
        stack.stop()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{events} events, one every 10 ms; load average {load}")
    print()
    print("| path | p50 ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|")
    for name, values in (("Redis pub/sub, direct (reference)", direct), ("gateway WebSocket", ws)):
        p50, p95 = statistics.median(values), pct(values, 95)
        print(f"| {name} | {p50:.2f} | {p95:.2f} | {max(values):.2f} |")
    print()
    print(f"ratio p95 gateway / direct: {pct(ws, 95) / pct(direct, 95):.2f}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.events))


if __name__ == "__main__":
    cli()
