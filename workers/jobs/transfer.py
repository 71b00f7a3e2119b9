"""Streamed transfer of instances from one PACS to another, with bounded concurrency.

Fetch lanes stream Part 10 files from the source into a small queue; store
lanes take them in batches and store them in the destination. At most
`lanes × batch` instances and `MEMORY_BYTES` are held at once, whatever the
study's size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.sources.base import InstanceRecord, PacsSource
from gateway.sources.part10 import meta_sop_instance_uid

Tick = Callable[[int], Awaitable[None]]
LINGER_S = 0.02  # how long a store lane waits to fill its batch
MEMORY_BYTES = 64 * 1024 * 1024  # fetched but not yet stored, at most


@dataclass
class Transferred:
    """Counts of one transfer."""

    stored: int = 0
    failed: int = 0
    bytes: int = 0


class ByteBudget:
    """Bounds the bytes fetched but not yet stored (an oversized file still passes alone)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = asyncio.Condition()

    async def take(self, size: int) -> None:
        """Wait until `size` more bytes fit."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.used == 0 or self.used + size <= self.limit)
            self.used += size

    async def give(self, size: int) -> None:
        """Return bytes once stored."""
        async with self._changed:
            self.used -= size
            self._changed.notify_all()


async def run_all(coros: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(coro)
    except BaseExceptionGroup as eg:
        raise eg.exceptions[0] from None


@dataclass(frozen=True, slots=True)
class Shipment:
    """What to send of one study: some instances, and series sent whole."""

    study_uid: str
    instances: Sequence[InstanceRecord]
    whole_series: Sequence[str] = ()


async def transfer(
    source: PacsSource,
    destination: PacsSource,
    shipments: Sequence[Shipment],
    *,
    lanes: int = 6,
    batch: int = 16,
    tick: Tick | None = None,
) -> Moved:
    """Copy the shipments of several studies through one pipeline (a store batch may hold
    instances of several studies); the counts per study UID.

    `tick(n)` is awaited after each stored batch of n instances (progress and
    cancellation checkpoints go there). When it raises (a cancel), no new batch is
    fetched or stored, the batches already on their way to the destination finish,
    and its exception is returned as `stopped` with what was stored until then: a stop
    never cuts a store request short.
    """
    work: list[tuple[str, str, InstanceRecord | None]] = []
    for ship in shipments:
        whole = set(ship.whole_series)
        work += [(ship.study_uid, s, None) for s in sorted(whole)]
        work += [
            (ship.study_uid, i.series_uid, i) for i in ship.instances if i.series_uid not in whole
        ]
    work.reverse()  # popped from the end: in the order given
    files: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=lanes * batch)
    budget = ByteBudget(MEMORY_BYTES)
    out = {ship.study_uid: Transferred() for ship in shipments}
    stop: list[Exception] = []  # what tick raised: wind down, then raise it

    async def put(study_uid: str, data: bytes) -> None:
        await budget.take(len(data))
        await files.put((study_uid, data))

    async def fetch() -> None:
        while work and not stop:
            study_uid, series_uid, inst = work.pop()
            if inst is None:
                async for data in source.retrieve_study(study_uid, [series_uid]):
                    if stop:
                        break
                    await put(study_uid, data)
            else:
                chunks = [
                    c
                    async for c in source.retrieve_instance(
                        study_uid, series_uid, inst.sop_instance_uid
                    )
                ]
                await put(study_uid, b"".join(chunks))

    filling = asyncio.Lock()  # one lane fills its batch at a time

    async def take() -> list[tuple[str, bytes]] | None:
        """The next batch: up to `batch` files, waiting `LINGER_S` after the first for more.

        Lanes fill one after another, so files arriving while the stores run make whole
        batches rather than one file for each idle lane (large files arrive slower than
        lanes free up: 0.5 MB CT slices went out one or two per store request)."""
        async with filling:
            first = await files.get()
            if first is None:  # this lane's end mark
                return None
            group = [first]
            linger = asyncio.get_running_loop().time() + LINGER_S
            while len(group) < batch:  # fill the batch, waiting a moment for more files
                try:
                    left = linger - asyncio.get_running_loop().time()
                    nxt = (
                        files.get_nowait()
                        if left <= 0
                        else await asyncio.wait_for(files.get(), left)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if nxt is None:
                    await files.put(None)  # leave the end mark for the next lane
                    break
                group.append(nxt)
            return group

    async def store() -> None:
        while (group := await take()) is not None:
            size = sum(len(data) for _, data in group)
            if stop:  # stopping: drain what was fetched, store nothing more
                await budget.give(size)
                continue
            result = await destination.store([data for _, data in group])
            await budget.give(size)
            _count(out, group, result.stored, result.failed)
            if tick is not None and not stop:
                try:
                    await tick(len(group))
                except Exception as exc:  # a cancel: the safe point is here
                    stop.append(exc)

    async def fetch_all() -> None:
        await run_all([fetch() for _ in range(max(1, min(lanes, len(work))))])
        for _ in range(lanes):
            await files.put(None)

    await run_all([fetch_all(), *(store() for _ in range(lanes))])
    return Moved(out, stop[0] if stop else None)


@dataclass(frozen=True, slots=True)
class Moved:
    """What a transfer stored, per study, and what stopped it (a cancel) if anything did."""

    per_study: dict[str, Transferred]
    stopped: Exception | None = None


def _count(
    out: dict[str, Transferred],
    group: Sequence[tuple[str, bytes]],
    stored: Sequence[str],
    failed: Sequence[str],
) -> None:
    """Credit a stored batch to its studies: every file when none failed, else by the
    SOP Instance UID each file's meta names."""
    if not failed and len(stored) == len(group):
        for study_uid, data in group:
            out[study_uid].stored += 1
            out[study_uid].bytes += len(data)
        return
    ok, bad = set(stored), set(failed)
    for study_uid, data in group:
        sop = meta_sop_instance_uid(data)
        if sop in ok:
            out[study_uid].stored += 1
            out[study_uid].bytes += len(data)
        elif sop in bad or sop is None:
            out[study_uid].failed += 1
