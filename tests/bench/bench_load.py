"""Load test of issue 12: 50 normal clients with and without one abusive client (locust).

    .venv/bin/python -m tests.bench.bench_load [--users 50] [--seconds 45] [--patients 20]
        [--abuse all,nested,sync-10k,...] [--rate 5 --burst 20]
        [--time-per-s 0.1 --time-burst-s 2]

Starts a LocalStack on loopback, seeds the demo data, starts the gateway as a process
(`pacs-gateway serve`, `[auth]` required), makes a radiologist's API token per normal
client and logs the admin in for the abusive one, then runs locust headless
(`tests/bench/locust_hardening.py`): the normal clients alone, then with the abusive
client once per `--abuse` item (`all`: every abusive request in turn, the default; or one
kind, e.g. `nested`, to see what each costs the others). Meanwhile `/health` is asked
twice a second. Prints requests/s and p50/p95/p99 of the normal clients, `/health`
latency and statuses, the gateway's RSS before and after each run and the abusive
requests sent, the gateway's CPU seconds during the run and the load average at its end
(and the CPU seconds the host took from this machine, its steal time),
as a Markdown table. `--rate` and `--burst` set the gateway's per-caller rate (`[gateway]
rate_per_s`, `burst`), `--time-per-s` and `--time-burst-s` its per-caller time budget.
Not a pytest test; at most (1 + items) x `--seconds` of load.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
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
    while True:  # the setup's requests keep to the rate (--rate)
        r = httpx.post(
            f"{base}/graphql",
            json={"query": query, "variables": variables},
            headers=headers,
            timeout=60,
        )
        if r.status_code != 429:
            break
        time.sleep(float(r.headers.get("retry-after", "1")))
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
    base: str, data: Path, out: Path, users: int, seconds: int, abuse: str | None
) -> dict[str, Any]:
    """The normal clients in one locust process and the abusive client, if any, in
    another: in one process the abuser's own work (sending requests without pause) would
    stall the normal users' greenlets and their timing, which a remote attacker does not."""
    exe = Path(sys.executable).with_name("locust")

    def locust(user_class: str, count: int, written: Path) -> subprocess.Popen[bytes]:
        cmd = [
            str(exe),
            "-f",
            str(Path(__file__).with_name("locust_hardening.py")),
            "--headless",
            "-u",
            str(count),
            "-r",
            str(count),
            "-t",
            f"{seconds}s",
            "--host",
            base,
            "--only-summary",
            "--stop-timeout",
            "10",
            user_class,
        ]
        env = {**os.environ, "LOAD_DATA": str(data), "LOAD_OUT": str(written)}
        env["LOAD_ABUSE"] = abuse or "all"
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    abusive_out = out.with_suffix(".abuse.json")
    runs = [locust("Clinician", users, out)]
    if abuse:
        runs.append(locust("Abuser", 1, abusive_out))
    for run in runs:
        try:
            run.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:  # as subprocess.run did: no locust left behind
            for left in runs:
                left.kill()
            raise
    everything = json.loads(out.read_text())
    if abuse:
        everything += json.loads(abusive_out.read_text())
    rows = [r for r in everything if not r[0].startswith("abuse:")]
    abusive = [t for name, t, _ in everything if name.startswith("abuse:")]
    times = [t for _, t, _ in rows]
    causes: dict[str, int] = {}
    for _, _, why in rows:
        if why is not None:
            cause = re.sub(r"\d+(\.\d+)?", "N", why)[:80]  # counts and ids alike
            causes[cause] = causes.get(cause, 0) + 1
    return {
        "causes": causes,
        "abusive": len(abusive),
        "abusive_ms": statistics.mean(abusive) if abusive else float("nan"),
        "requests": len(rows),
        "failures": sum(1 for _, _, why in rows if why is not None),
        "rps": len(rows) / seconds,
        "p50": _percentile(times, 50),
        "p95": _percentile(times, 95),
        "p99": _percentile(times, 99),
    }


def _steal() -> float:
    """Seconds of this virtual machine's CPU time the host gave to others (steal, over
    every CPU): a run that lost much of it was slowed from outside."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def _baseline_p95(results: list[tuple[Any, ...]], i: int) -> float:
    """The normal clients' p95 beside run i: the mean of the nearest baseline run before
    it and the nearest after it (when there is one), so that drift cancels out."""
    before = next(r[1]["p95"] for r in reversed(results[:i]) if r[0] is None)
    after = next((r[1]["p95"] for r in results[i + 1 :] if r[0] is None), None)
    return float(before if after is None else (before + after) / 2)


def main() -> int:
    """Run both phases and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=45)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rate", type=float, help="[gateway] rate_per_s (default: its own)")
    parser.add_argument("--burst", type=int, help="[gateway] burst (default: its own)")
    parser.add_argument("--time-per-s", type=float, help="[gateway] time_per_s")
    parser.add_argument("--time-burst-s", type=float, help="[gateway] time_burst_s")
    parser.add_argument(
        "--abuse",
        default="all",
        help="comma-separated: one run with the abusive client per item, 'all' or one kind "
        "('none': the normal clients alone again, to see the machine drift) "
        "(sync-10k, sync-100k, padded, nested, compare-star, date-star, host, null-body, "
        "brackets, nul, long-id)",
    )
    args = parser.parse_args()
    phases: list[str | None] = [None, *(a if a != "none" else None for a in args.abuse.split(","))]
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
        toml = info.gateway_toml(results_dir=str(work / "results"), sync_interval_s=0)
        limits = (
            ("rate_per_s", args.rate),
            ("burst", args.burst),
            ("time_per_s", args.time_per_s),
            ("time_burst_s", args.time_burst_s),
        )
        for key, value in limits:
            if value is not None:
                toml = toml.replace("[gateway]\n", f"[gateway]\n{key} = {value}\n", 1)
        config.write_text(toml)
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
        for abuse in phases:
            rss_before = process.memory_info().rss / 2**20
            cpu_before = sum(process.cpu_times()[:2])
            steal_before = _steal()
            probe = HealthProbe(base)
            probe.start()
            stats = _run_locust(
                base, data, work / f"out-{abuse or 'none'}.json", args.users, args.seconds, abuse
            )
            probe.stop.set()
            probe.join()
            rss_after = process.memory_info().rss / 2**20
            stats["cpu"] = sum(process.cpu_times()[:2]) - cpu_before
            stats["load"] = os.getloadavg()[0]
            stats["steal"] = _steal() - steal_before
            results.append((abuse, stats, probe, rss_before, rss_after))
        print(
            "| run | normal requests/s | failures | p50 ms | p95 ms | p99 ms | p95 change "
            "| /health p50 / max ms | /health answers | gateway RSS MB before → after "
            "| abusive requests (mean ms) | gateway CPU s | load | CPU taken by the host s |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for i, (abuse, s, probe, before, after) in enumerate(results):
            name = f"with the abusive client ({abuse})" if abuse else "normal clients only"
            change = f"{100 * (s['p95'] / _baseline_p95(results, i) - 1):+.0f} %" if abuse else ""
            health = f"{statistics.median(probe.latencies):.0f} / {max(probe.latencies):.0f}"
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(probe.statuses.items()))
            sent = f"{s['abusive']} ({s['abusive_ms']:.0f})" if abuse else ""
            print(
                f"| {name} | {s['rps']:.1f} | {s['failures']} of {s['requests']} "
                f"| {s['p50']:.0f} | {s['p95']:.0f} | {s['p99']:.0f} | {change} | {health} "
                f"| {answers} | {before:.0f} → {after:.0f} | {sent} | {s['cpu']:.1f} "
                f"| {s['load']:.1f} | {s['steal']:.1f} |"
            )
        for abuse, s, *_ in results:
            for cause, count in sorted(s["causes"].items(), key=lambda c: -c[1]):
                print(f"failed ({abuse or 'normal clients only'}): {count} x {cause}")
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
            drop_database(stack.info.database_url, prefix="pacs_gw_bench_load")


if __name__ == "__main__":
    sys.exit(main())
