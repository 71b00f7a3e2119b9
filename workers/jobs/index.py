"""The INDEX job: build one archive's key index, with progress."""

from __future__ import annotations

from typing import Any

from gateway.index.refresh import build
from gateway.jobs.specs import IndexSpec
from gateway.runtime import Runtime
from workers.jobs.base import JobHandle


async def run(job: JobHandle, runtime: Runtime, spec: IndexSpec) -> dict[str, Any]:
    """List the archive once and make its index hold exactly what it lists."""

    async def progress(fraction: float, phase: str) -> None:
        await job.checkpoint()
        await job.progress(fraction, phase, None)

    done = await build(runtime.sessions, runtime.sources[spec.source], progress)
    await job.progress(1.0, "done", f"{done.upserted} studies indexed")
    return {"source": spec.source, "studies": done.upserted, "removed": done.removed}
