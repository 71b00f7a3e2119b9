"""`pacs-gateway sync`: a sync job run in this process, with a progress bar and a summary."""

from __future__ import annotations

import json
import sys
from typing import Any

from tqdm import tqdm

from gateway.core.enums import JobStatus
from gateway.core.errors import InvalidInput, JobError
from gateway.core.settings import Settings
from gateway.jobs.specs import SyncSpec
from gateway.jobs.store import JobStore
from gateway.runtime import Runtime


async def run_sync(settings: Settings, body: dict[str, Any], quiet: bool = False) -> int:
    """0 when the job succeeded, 1 when it failed, 2 for a refused input."""
    from workers.jobs import sync
    from workers.runner import run_here

    try:
        spec = SyncSpec.parse(body, settings)
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runtime = await Runtime.create(settings)
    bar = tqdm(total=100, unit="%", disable=quiet, file=sys.stderr, bar_format="{l_bar}{bar}|")

    def watch(fraction: float, phase: str | None, message: str | None) -> None:
        bar.set_description(f"{phase or ''} {message or ''}".strip()[:60])
        bar.update(round(fraction * 100) - bar.n)

    try:
        job_id = await run_here(runtime, spec, sync.run, "cli", watch)
        job = await JobStore(runtime.sessions).get(job_id)
    except JobError as exc:  # the same sync is already running in a worker
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
        await runtime.aclose()
    assert job is not None
    summary = {"job": job.id, "status": job.status, "error": job.error, "result": job.result}
    print(json.dumps(summary, indent=2, default=str))
    return 0 if job.status == JobStatus.SUCCEEDED else 1
