"""Sync throughput Orthanc → Orthanc against Orthanc's own peer transfer, in the same run.

Run: `.venv/bin/python -m tests.bench.bench_sync --instances 1000 --repeat 3`
(`--rows 512`: 512x512 16-bit images of about 0.5 MB, the size of a real CT slice;
the default, 16, measures per-instance overhead only).

Each round stores three fresh studies of N CT instances into the source
Orthanc. One is sent by Orthanc itself (`POST /peers/{peer}/store`, one
instance at a time); the others by a SYNC job run in this process (plan,
streamed transfer, verification: the whole job, not only the copy), to a second
Orthanc over REST and to the DCM4CHEE role over STOW-RS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from gateway.core.settings import Settings, load_settings
from gateway.devstack.stack import LocalStack, StackInfo
from gateway.jobs.specs import SyncSpec
from gateway.runtime import Runtime
from tests.jobs_support import big_study
from workers.jobs import sync
from workers.runner import run_here

MIRROR = """
[[sources]]
id = "mirror"
name = "Second Orthanc (REST)"
kind = "orthanc"
url = "{url}"
roles = ["query", "retrieve", "store"]
timeout_s = 30
"""


def mirror_settings(info: StackInfo, work: Path) -> Settings:
    """Settings for the stack plus its second Orthanc as "mirror" (REST), open mode."""
    config = work / "gateway.toml"
    config.write_text(
        info.gateway_toml(sync_interval_s=0, auth_mode="open")
        + MIRROR.format(url=info.dcm4chee_rest)
    )
    env = {"DATABASE_URL": info.database_url, "REDIS_URL": info.redis_url}
    return load_settings(config, env=env)


async def _peer_transfer(info: StackInfo, study_uid: str) -> float:
    async with httpx.AsyncClient(base_url=info.orthanc_url, timeout=600) as http:
        found = await http.post("/tools/lookup", content=study_uid)
        study_id = next(r["ID"] for r in found.json() if r["Type"] == "Study")
        start = time.perf_counter()
        answer = await http.post("/peers/mirror/store", json=[study_id])
        answer.raise_for_status()
        return time.perf_counter() - start


async def _job_transfer(runtime: Runtime, study_uid: str, target: str) -> tuple[float, int]:
    body = {"from": "orthanc", "to": target, "studyInstanceUids": [study_uid]}
    start = time.perf_counter()
    await run_here(runtime, SyncSpec.parse(body, runtime.settings), sync.run, "bench")
    seconds = time.perf_counter() - start
    return seconds, 0


async def main(instances: int, repeat: int, image_rows: int = 16) -> None:
    before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    stack = LocalStack(workdir=work, database_name="pacs_gateway_bench")
    info = stack.start()
    try:
        settings = mirror_settings(info, work)
        async with httpx.AsyncClient(base_url=info.orthanc_url) as http:
            peer = {"Url": info.dcm4chee_rest}
            (await http.put("/peers/mirror", json=peer)).raise_for_status()
        runtime = await Runtime.create(settings)
        rows: dict[str, list[float]] = {"peer": [], "job": [], "job-stow": []}
        size = 0
        try:
            for r in range(repeat):
                studies = {}
                for kind in rows:
                    uid, files = big_study(
                        instances, seed=1000 + 10 * r + len(studies), rows=image_rows
                    )
                    size = sum(len(f) for f in files)
                    await runtime.sources["orthanc"].store(files)
                    studies[kind] = uid
                order = list(rows) if r % 2 == 0 else list(reversed(rows))
                for kind in order:
                    if kind == "peer":
                        rows[kind].append(await _peer_transfer(info, studies[kind]))
                    else:
                        target = "mirror" if kind == "job" else "dcm4chee"
                        seconds, _ = await _job_transfer(runtime, studies[kind], target)
                        rows[kind].append(seconds)
        finally:
            await runtime.aclose()
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)  # 0.8 GB per round with --rows 512
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    peer = statistics.median(rows["peer"])
    print(
        f"{instances} instances of {image_rows}x{image_rows} ({size / 1e6:.1f} MB, "
        f"{size / instances / 1e3:.1f} kB each) per study, median of {repeat}; "
        f"load {before} before, {load} after"
    )
    print()
    print("| transfer | seconds | instances/s | MB/s | ratio vs peer (throughput) |")
    print("|---|---:|---:|---:|---:|")
    names = {
        "peer": "Orthanc peer transfer (`/peers/mirror/store`)",
        "job": "SYNC job Orthanc → Orthanc (REST)",
        "job-stow": "SYNC job Orthanc → DCM4CHEE role (STOW-RS)",
    }
    for kind, times in rows.items():
        t = statistics.median(times)
        print(
            f"| {names[kind]} | {t:.2f} | {instances / t:.0f} | {size / 1e6 / t:.1f} "
            f"| {peer / t:.2f} |"
        )
    print()
    for kind, times in rows.items():
        print(f"{kind}: " + ", ".join(f"{t:.2f}" for t in times) + " s")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--rows", type=int, default=16, help="image rows = columns (16-bit); 512 for a real CT"
    )
    args = parser.parse_args()
    asyncio.run(main(args.instances, args.repeat, args.rows))


if __name__ == "__main__":
    cli()
