"""Load test of issue 12: 50 normal clients with and without one abusive client (locust).

    .venv/bin/python -m tests.bench.bench_load [--users 50] [--seconds 45] [--patients 20]

Starts a LocalStack on loopback, seeds the demo data, starts the gateway as a process
(`pacs-gateway serve`, `[auth]` required), makes a radiologist's API token per normal
client and logs the admin in for the abusive one, then runs locust headless twice
(`tests/bench/locust_hardening.py`): the normal clients alone, then with the abusive
client. Meanwhile `/health` is asked twice a second. Prints requests/s and p50/p95/p99 of
the normal clients, `/health` latency and statuses, and the gateway's RSS before and
after each run, as a Markdown table. Not a pytest test; at most 2 x `--seconds` of load.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from gateway.core.settings import load_settings
from gateway.db.engine import migrate
from gateway.devstack.demo import demo_users
from gateway.devstack.seed.archives import seed_archives
from gateway.devstack.stack import LocalStack
from tests.jobs_support import drop_database

LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }"
TOKEN = "mutation($n: String!) { createApiToken(name: $n) { token } }"
STUDIES = "{ studies(first: 200) { edges { node { studyInstanceUid } } } }"


def _gql(base: str, query: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=60,
    )
    body: dict[str, Any] = r.json()
    assert r.status_code == 200 and not body.get("errors"), r.text[:500]
    data: dict[str, Any] = body["data"]
    return data


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class HealthProbe(threading.Thread):
    """GET /health twice a second: latencies and statuses."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.stop = base, threading.Event()
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    r = client.get(f"{self.base}/health")
                    status = f"{r.status_code} {r.json().get('status')}"
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.latencies.append((time.perf_counter() - started) * 1000)
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.stop.wait(0.5)


def _run_locust(
    base: str, data: Path, out: Path, users: int, seconds: int, abuse: bool
) -> dict[str, Any]:
    classes = ["Clinician", "Abuser"] if abuse else ["Clinician"]
    total = users + (1 if abuse else 0)
    exe = Path(sys.executable).with_name("locust")
    cmd = [
        str(exe),
        "-f",
        str(Path(__file__).with_name("locust_hardening.py")),
        "--headless",
        "-u",
        str(total),
        "-r",
        str(total),
        "-t",
        f"{seconds}s",
        "--host",
        base,
        "--only-summary",
        "--stop-timeout",
        "10",
        *classes,
    ]
    env = {**os.environ, "LOAD_DATA": str(data), "LOAD_OUT": str(out)}
    subprocess.run(cmd, env=env, check=False, capture_output=True, timeout=seconds + 60)
    rows = json.loads(out.read_text())
    times = [t for _, t, _ in rows]
    return {
        "requests": len(rows),
        "failures": sum(1 for _, _, ok in rows if not ok),
        "rps": len(rows) / seconds,
        "p50": _percentile(times, 50),
        "p95": _percentile(times, 95),
        "p99": _percentile(times, 99),
    }


def main() -> int:
    """Run both phases and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=45)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    stack = LocalStack(
        workdir=work / "stack",
        redis_url=os.environ.get("REDIS_URL"),
        database_url=os.environ.get("DATABASE_URL"),
        database_name="pacs_gw_bench_load",
    )
    stack.start()
    gateway: subprocess.Popen[bytes] | None = None
    try:
        info = stack.info
        assert info is not None
        config = work / "gateway.toml"
        config.write_text(info.gateway_toml(results_dir=str(work / "results"), sync_interval_s=0))
        env = {
            "DATABASE_URL": info.database_url,
            "REDIS_URL": info.redis_url,
            "GATEWAY_DEID_KEY": "bench-key-not-secret",
            "GATEWAY_MAPPING_KEY": base64.b64encode(b"k" * 32).decode(),
        }
        settings = load_settings(config, env=env)
        asyncio.run(migrate(settings.database_url))
        asyncio.run(seed_archives(settings, 42, args.patients, None))
        passwords = asyncio.run(demo_users(settings))
        base = f"http://127.0.0.1:{args.port}"
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.server.cli",
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(args.port),
            ],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=(work / "gateway.log").open("wb"),
        )
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        radiologist = _gql(base, LOGIN, u="radiologist", p=passwords["radiologist"])["login"]
        admin = _gql(base, LOGIN, u="admin", p=passwords["admin"])["login"]["token"]
        tokens = [
            _gql(base, TOKEN, radiologist["token"], n=f"load-{i}")["createApiToken"]["token"]
            for i in range(args.users)
        ]
        studies = [
            e["node"]["studyInstanceUid"]
            for e in _gql(base, STUDIES, radiologist["token"])["studies"]["edges"]
        ]
        data = work / "load.json"
        data.write_text(json.dumps({"tokens": tokens, "abuser": admin, "studies": studies}))
        process = psutil.Process(gateway.pid)
        results = []
        for abuse in (False, True):
            rss_before = process.memory_info().rss / 2**20
            probe = HealthProbe(base)
            probe.start()
            stats = _run_locust(
                base, data, work / f"out-{abuse}.json", args.users, args.seconds, abuse
            )
            probe.stop.set()
            probe.join()
            rss_after = process.memory_info().rss / 2**20
            results.append((abuse, stats, probe, rss_before, rss_after))
        print(
            "| run | normal requests/s | failures | p50 ms | p95 ms | p99 ms "
            "| /health p50 / max ms | /health answers | gateway RSS MB before → after |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for abuse, s, probe, before, after in results:
            name = "with the abusive client" if abuse else "normal clients only"
            health = f"{statistics.median(probe.latencies):.0f} / {max(probe.latencies):.0f}"
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(probe.statuses.items()))
            print(
                f"| {name} | {s['rps']:.1f} | {s['failures']} of {s['requests']} "
                f"| {s['p50']:.0f} | {s['p95']:.0f} | {s['p99']:.0f} | {health} | {answers} "
                f"| {before:.0f} → {after:.0f} |"
            )
        base_p95, abuse_p95 = results[0][1]["p95"], results[1][1]["p95"]
        print(f"\np95 change with the abusive client: {100 * (abuse_p95 / base_p95 - 1):+.0f} %")
        return 0
    finally:
        if gateway is not None:
            gateway.terminate()
            try:
                gateway.wait(10)
            except subprocess.TimeoutExpired:
                gateway.kill()
        stack.stop()
        if stack.info is not None:
            drop_database(stack.info.database_url)


if __name__ == "__main__":
    sys.exit(main())
