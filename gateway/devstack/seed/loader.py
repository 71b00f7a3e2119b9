"""Loading a demo plan into archives through their `PacsSource.store`, or onto disk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from pathlib import Path

from gateway.core.errors import GatewayError
from gateway.devstack.seed.plan import DemoPlan
from gateway.sources.base import PacsSource

Progress = Callable[[str, int, int], None]


class SeedLoadError(GatewayError):
    """An archive refused some of the demo instances."""

    code = "SEED_LOAD_ERROR"

    def __init__(self, source: str, refused: int, attempted: int) -> None:
        super().__init__(f"{source}: {refused} of {attempted} demo instances refused")
        self.source = source
        self.refused = refused


def _take(files: Iterator[bytes], n: int) -> list[bytes]:
    return list(islice(files, n))


async def _load_one(
    plan: DemoPlan, source_id: str, source: PacsSource, batch: int, progress: Progress | None
) -> int:
    total = plan.count(source_id)
    files = plan.iter_files(source_id)
    done = stored = 0
    if progress:
        progress(source_id, 0, total)
    while chunk := await asyncio.to_thread(_take, files, batch):
        result = await source.store(chunk)
        if result.failed:
            raise SeedLoadError(source_id, len(result.failed), len(chunk))
        done += len(chunk)
        stored += len(result.stored)
        if progress:
            progress(source_id, done, total)
    return stored


async def load_demo(
    plan: DemoPlan,
    sources: Mapping[str, PacsSource],
    batch: int = 50,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Store each archive's files in batches, archives concurrently; instances stored per source.

    Files are generated in a worker thread, one batch at a time. Raises `SeedLoadError`
    when a store reports refused instances, `ValueError` for a source the plan lacks.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    unknown = [s for s in sources if s not in plan.sources]
    if unknown:
        raise ValueError(f"sources not in the plan: {', '.join(unknown)}")
    tasks = [
        asyncio.create_task(_load_one(plan, sid, src, batch, progress))
        for sid, src in sources.items()
    ]
    try:
        counts = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return dict(zip(sources, counts, strict=True))


def write_files(plan: DemoPlan, source_id: str, directory: str | Path) -> int:
    """Write `source_id`'s files as `000000.dcm`, `000001.dcm`, ... into `directory`."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    n = 0
    for n, data in enumerate(plan.iter_files(source_id), start=1):
        (target / f"{n - 1:06d}.dcm").write_bytes(data)
    return n
