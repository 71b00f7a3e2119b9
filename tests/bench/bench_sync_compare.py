"""A full sync between two real Orthanc archives of 600 studies: the compare of identical
archives, then the sync of 483 instances removed from the destination.

Run: `.venv/bin/python -m tests.bench.bench_sync_compare --studies 600 --missing 483 --repeat 3`

A fresh local stack; the source is its Orthanc ("orthanc", REST), the destination the
second Orthanc of the stack through its REST API ("mirror"). Both receive the same
studies of 3 to 6 small CT instances (about 4.7 per study). Timed, median of `--repeat`:
a whole SYNC job `all: true` run in this process (plan, transfer, verification, record)
(1) with both archives identical, as a dry run and as a real run; (2) after `--missing`
instances spread over the studies were deleted from the destination (re-deleted before
each round). The requests each archive answered are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.devstack.stack import LocalStack
from gateway.jobs.specs import SyncSpec
from gateway.jobs.store import JobStore
from gateway.runtime import Runtime
from gateway.sources.part10 import sop_instance_uid
from tests.bench.bench_sync import mirror_settings
from tests.jobs_support import big_study
from workers.jobs import sync
from workers.runner import run_here


async def _job(runtime: Runtime, body: dict[str, Any]) -> tuple[float, dict[str, Any], dict]:
    calls = {s: dict(runtime.sources[s].stats.by_operation) for s in ("orthanc", "mirror")}
    start = time.perf_counter()
    job_id = await run_here(runtime, SyncSpec.parse(body, runtime.settings), sync.run, "bench")
    seconds = time.perf_counter() - start
    job = await JobStore(runtime.sessions).get(job_id)
    assert job is not None and job.status == "SUCCEEDED", job and job.error
    after = {s: dict(runtime.sources[s].stats.by_operation) for s in ("orthanc", "mirror")}
    requests = {
        s: {op: n - calls[s].get(op, 0) for op, n in after[s].items() if n - calls[s].get(op, 0)}
        for s in after
    }
    return seconds, job.result or {}, requests


async def _delete(rest: str, sop_uids: list[str]) -> None:
    async with httpx.AsyncClient(base_url=rest, timeout=60) as http:
        for uid in sop_uids:
            found = (await http.post("/tools/lookup", content=uid)).json()
            for item in found:
                if item["Type"] == "Instance":
                    (await http.delete(item["Path"])).raise_for_status()


def _fmt(requests: dict[str, dict[str, int]]) -> str:
    return "; ".join(
        f"{s}: " + ", ".join(f"{op} {n}" for op, n in sorted(ops.items()))
        for s, ops in requests.items()
    )


async def main(studies: int, missing: int, repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    stack = LocalStack(workdir=work, database_name="pacs_gateway_bench")
    info = stack.start()
    try:
        runtime = await Runtime.create(mirror_settings(info, work))
        try:
            files: list[bytes] = []
            step = max(1, studies * 47 // 10 // missing)  # spread the removals evenly
            for k in range(studies):
                _, made = big_study(3 + k % 4, seed=5000 + k)
                files += made
            removed = [str(sop_instance_uid(f)) for f in files][::step][:missing]
            started = time.perf_counter()
            for i in range(0, len(files), 200):
                batch = files[i : i + 200]
                await asyncio.gather(
                    runtime.sources["orthanc"].store(batch), runtime.sources["mirror"].store(batch)
                )
            print(
                f"seeded {studies} studies, {len(files)} instances each side in "
                f"{time.perf_counter() - started:.0f} s"
            )
            body = {"from": "orthanc", "to": "mirror", "all": True}
            rows: dict[str, list[float]] = {
                "dry": [],
                "identical": [],
                "missing-dry": [],
                "missing": [],
            }
            seen: dict[str, Any] = {}
            for _ in range(repeat):
                for key, dry in (("dry", True), ("identical", False), ("missing-dry", True)):
                    if key == "missing-dry":
                        await _delete(info.dcm4chee_rest, removed)
                    seconds, result, requests = await _job(runtime, {**body, "dryRun": dry})
                    rows[key].append(seconds)
                    seen[key] = (result, requests)
                seconds, result, requests = await _job(runtime, body)
                assert result["instancesTransferred"] == len(removed), result[
                    "instancesTransferred"
                ]
                assert result["verified"] is True
                rows["missing"].append(seconds)
                seen["missing"] = (result, requests)
        finally:
            await runtime.aclose()
    finally:
        stack.stop()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{studies} studies, {len(files)} instances; {len(removed)} removed; "
        f"median of {repeat}; load average {load}"
    )
    print()
    print(
        "| full sync `all: true` | seconds | studies settled by counts | instances sent | "
        "requests |"
    )
    print("|---|---:|---:|---:|---|")
    names = {
        "dry": "identical archives, dry run",
        "identical": "identical archives",
        "missing-dry": f"{len(removed)} instances missing, dry run (the compare alone)",
        "missing": f"{len(removed)} instances missing",
    }
    for key, times in rows.items():
        result, requests = seen[key]
        print(
            f"| {names[key]} | {statistics.median(times):.2f} | {result['studiesInSync']} | "
            f"{result['instancesTransferred']} | {_fmt(requests)} |"
        )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=600)
    parser.add_argument("--missing", type=int, default=483)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.studies, args.missing, args.repeat))


if __name__ == "__main__":
    cli()
