"""A job run in this process (`pacs-gateway sync`, `pacs-gateway import`): a progress bar on
stderr, the job's summary as JSON on stdout, recorded like any other job."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from tqdm import tqdm

from gateway.core.enums import JobStatus
from gateway.core.errors import JobError
from gateway.core.settings import Settings
from gateway.jobs.specs import JobSpec
from gateway.jobs.store import JobStore
from gateway.runtime import Runtime

if TYPE_CHECKING:
    from workers.jobs.base import Runner


async def run_shown(settings: Settings, spec: JobSpec, runner: Runner, quiet: bool) -> int:
    """0 when the job succeeded, 1 when it failed (or the same job already runs elsewhere)."""
    from workers.runner import run_here

    runtime = await Runtime.create(settings)
    bar = tqdm(total=100, unit="%", disable=quiet, file=sys.stderr, bar_format="{l_bar}{bar}|")

    def watch(fraction: float, phase: str | None, message: str | None) -> None:
        bar.set_description(f"{phase or ''} {message or ''}".strip()[:60])
        bar.update(round(fraction * 100) - bar.n)

    try:
        job_id = await run_here(runtime, spec, runner, "cli", watch)
        job = await JobStore(runtime.sessions).get(job_id)
    except JobError as exc:  # e.g. the same sync is already running in a worker
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
        await runtime.aclose()
    assert job is not None
    summary = {"job": job.id, "status": job.status, "error": job.error, "result": job.result}
    print(json.dumps(summary, indent=2, default=str))
    return 0 if job.status == JobStatus.SUCCEEDED else 1
