"""The transfer pipeline's store batches when files arrive slower than lanes free up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import cast

from gateway.sources.base import PacsSource, StoreResult
from workers.jobs.transfer import Shipment, transfer

STUDY = "1.2.3"
SERIES = "1.2.3.4"


class SlowSeries:
    """A source whose one series yields `count` files, one every `every_s` (as large
    files arrive); a destination that records each store call's batch."""

    def __init__(self, count: int, every_s: float) -> None:
        self.count, self.every_s = count, every_s
        self.batches: list[int] = []

    async def retrieve_study(
        self, study_uid: str, series_uids: Sequence[str] = ()
    ) -> AsyncIterator[bytes]:
        for k in range(self.count):
            await asyncio.sleep(self.every_s)
            yield b"file-%05d" % k

    async def store(self, files: Sequence[bytes]) -> StoreResult:
        self.batches.append(len(files))
        await asyncio.sleep(0.001)
        return StoreResult(stored=tuple(f"#{i}" for i in range(len(files))), failed=())


async def test_slow_arrivals_fill_batches_one_lane_at_a_time() -> None:
    fake = SlowSeries(count=60, every_s=0.002)
    source = destination = cast(PacsSource, fake)
    ticks: list[int] = []

    async def tick(n: int) -> None:
        ticks.append(n)

    moved = await transfer(
        source, destination, [Shipment(STUDY, (), (SERIES,))], lanes=6, batch=16, tick=tick
    )
    assert moved.per_study[STUDY].stored == 60
    assert sum(fake.batches) == 60 and sum(ticks) == 60
    # six idle lanes no longer split the arrivals one file each: batches of several
    assert len(fake.batches) <= 20, fake.batches


async def test_fast_arrivals_make_full_batches() -> None:
    fake = SlowSeries(count=100, every_s=0)
    source = destination = cast(PacsSource, fake)
    moved = await transfer(source, destination, [Shipment(STUDY, (), (SERIES,))], batch=16)
    assert moved.per_study[STUDY].stored == 100
    assert sum(fake.batches) == 100
    assert max(fake.batches) == 16
