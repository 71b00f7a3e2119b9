"""Sync compare at archive scale, simulated: a full `syncStudies(all: true, dryRun: true)`
between two in-memory archives of 10^4 to 10^6 studies, 0.1 % of them differing.

    .venv/bin/python -m tests.bench.sim_sync [--studies 10000 100000 1000000]
        [--differ 0.001]

Each archive (`SimArchive`, the `PacsSource` protocol of what a sync asks) holds
`--studies` studies of 3 series of 5 instances, every attribute a function of the study
number; in the destination, a `--differ` share of the studies lacks its first series.
The whole SYNC job runs in this process (`workers.runner.run_here`: job row, events,
planning, the result), on a SQLite database in a temporary directory and the Redis of
REDIS_URL (default redis://127.0.0.1:6379/15). Reported per size: the job's time, the
requests each archive answered by operation, and the job's result figures. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from gateway.core.settings import SourceConfig, load_settings
from gateway.jobs.specs import SyncSpec
from gateway.jobs.store import JobStore
from gateway.runtime import Runtime
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
from workers.jobs import sync
from workers.runner import run_here

SERIES, INSTANCES = 3, 5
CONFIG = """
[gateway]
results_dir = "{results}"

[[sources]]
id = "main"
kind = "orthanc"
url = "http://127.0.0.1:9"
roles = ["query", "retrieve", "store"]

[[sources]]
id = "mirror"
kind = "orthanc"
url = "http://127.0.0.1:9"
roles = ["query", "retrieve", "store"]
"""


def study_uid(k: int) -> str:
    """The UID of study number k."""
    return f"2.25.{1000000 + k}"


class SimArchive:
    """An archive of `n` studies answering from arithmetic; `lacking` studies miss their
    first series. Every call is counted by operation."""

    def __init__(self, source_id: str, n: int, lacking: frozenset[int]) -> None:
        self.config = SourceConfig(id=source_id, kind="orthanc", url="http://127.0.0.1:9")  # type: ignore[arg-type]
        self.n, self.lacking = n, lacking
        self._stats = CallStats()

    @property
    def id(self) -> str:
        """The configured id."""
        return self.config.id

    @property
    def stats(self) -> CallStats:
        """The calls answered."""
        return self._stats

    def _number(self, uid: str) -> int | None:
        try:
            k = int(uid.rsplit(".", 1)[1]) - 1000000
        except (IndexError, ValueError):
            return None
        return k if 0 <= k < self.n else None

    def _series(self, k: int) -> list[int]:
        return [s for s in range(SERIES) if not (s == 0 and k in self.lacking)]

    def _study(self, k: int) -> StudyRecord:
        series = self._series(k)
        return StudyRecord(
            study_uid=study_uid(k),
            patient_id=f"P{k // 2:07d}",
            patient_name=f"SIM^{k // 2}",
            study_date=f"20{10 + k % 15:02d}0101",
            description="SIM",
            accession_number=f"A{k}",
            modalities=("CT",),
            series_count=len(series),
            instance_count=len(series) * INSTANCES,
        )

    async def ping(self) -> float:
        """Always up."""
        return 0.0

    async def find_patients(self, query: PatientQuery) -> list[PatientRecord]:
        """Not asked by a sync."""
        return []

    async def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        """Every study, or those of a UID list."""
        self._stats.record("find_studies", 0.0, True)
        if query.study_uids:
            found = (self._number(u) for u in query.study_uids)
            return [self._study(k) for k in found if k is not None]
        return [self._study(k) for k in range(self.n)]

    async def find_series(self, query: SeriesQuery) -> list[SeriesRecord]:
        """The series of the studies asked."""
        self._stats.record("find_series", 0.0, True)
        out = []
        for uid in query.study_uids:
            k = self._number(uid)
            for s in self._series(k) if k is not None else []:
                out.append(SeriesRecord(f"{uid}.{s + 1}", uid, "CT", s + 1, "SIM", INSTANCES))
        return out

    async def find_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        """The instances of one study (of some series)."""
        self._stats.record("find_instances", 0.0, True)
        k = self._number(query.study_uid)
        out = []
        for s in self._series(k) if k is not None else []:
            series = f"{query.study_uid}.{s + 1}"
            if query.series_uids and series not in query.series_uids:
                continue
            for i in range(INSTANCES):
                out.append(
                    InstanceRecord(
                        f"{series}.{i + 1}",
                        series,
                        query.study_uid,
                        "1.2.840.10008.5.1.4.1.1.2",
                        i + 1,
                    )
                )
        return out

    async def retrieve_instance(self, study: str, series: str, sop: str) -> AsyncIterator[bytes]:
        """Not asked by a dry run."""
        raise NotImplementedError
        yield b""  # pragma: no cover

    async def retrieve_study(self, study: str, series: Sequence[str] = ()) -> AsyncIterator[bytes]:
        """Not asked by a dry run."""
        raise NotImplementedError
        yield b""  # pragma: no cover

    async def store(self, files: Sequence[bytes]) -> StoreResult:
        """Not asked by a dry run."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Nothing to release."""


async def one(n: int, differ: float, work: Path) -> dict[str, Any]:
    step = max(1, round(1 / differ)) if differ > 0 else n + 1
    lacking = frozenset(range(0, n, step))
    config = work / f"sim-{n}.toml"
    config.write_text(CONFIG.format(results=work / "results"))
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{work}/sim-{n}.db",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
    }
    runtime = await Runtime.create(load_settings(config, env=env))
    try:
        main, mirror = SimArchive("main", n, frozenset()), SimArchive("mirror", n, lacking)
        runtime.sources = {"main": main, "mirror": mirror}  # type: ignore[dict-item]
        spec = SyncSpec.parse(
            {"from": "main", "to": "mirror", "all": True, "dryRun": True}, runtime.settings
        )
        started = time.perf_counter()
        job_id = await run_here(runtime, spec, sync.run, "sim")
        seconds = time.perf_counter() - started
        job = await JobStore(runtime.sessions).get(job_id)
        assert job is not None and job.status == "SUCCEEDED", job and job.error
        result = job.result or {}
        return {
            "studies": n,
            "differing": len(lacking),
            "seconds": seconds,
            "main": dict(main.stats.by_operation),
            "mirror": dict(mirror.stats.by_operation),
            "toTransfer": result["instancesToTransfer"],
            "inSync": result["studiesInSync"],
            "listed": len(result["studies"]),
        }
    finally:
        await runtime.aclose()


async def main(sizes: list[int], differ: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="sim-sync-"))
    rows = [await one(n, differ, work) for n in sizes]
    print(f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print(
        "| studies | differing | job s | µs per study | requests main | requests mirror "
        "| instances to send | settled by counts | listed in result |"
    )
    print("|---:|---:|---:|---:|---|---|---:|---:|---:|")
    for r in rows:

        def reqs(ops: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))

        print(
            f"| {r['studies']:,} | {r['differing']:,} | {r['seconds']:.2f} | "
            f"{r['seconds'] / r['studies'] * 1e6:.1f} | {reqs(r['main'])} | {reqs(r['mirror'])} | "
            f"{r['toTransfer']:,} | {r['inSync']:,} | {r['listed']:,} |"
        )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--differ", type=float, default=0.001)
    args = parser.parse_args()
    asyncio.run(main(args.studies, args.differ))


if __name__ == "__main__":
    cli()
