"""DIMSE adapter (pynetdicom): C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE.

One association per call, opened in the source's own thread pool (so a hung
archive never blocks the event loop or another source); a call cancelled by
the guard's deadline aborts its association. Timeouts come from the config
(see `dimse_assoc`). Queries, local matching and count derivation:
`dimse_query`; identifiers and records: `dimse_records`.

C-GET streams: the association thread hands each received instance, as a
Part 10 file with file meta, to the caller through a bounded `asyncio.Queue`
(depth 2), so the SCP waits while the caller is slow and a study is never
held in memory. The guard (retries, breaker, timing) covers opening the
association; afterwards each instance must arrive within `timeout_s`.

C-GET proposes pynetdicom's 120 storage SOP classes with uncompressed transfer
syntaxes only: an instance stored compressed arrives only if the SCP can
decompress it (Orthanc can, dcmqrscp cannot); failed sub-operations are
reported as SourceProtocolError after the instances that did arrive.

`move_study` sends a C-MOVE to an AE title the SCP knows (PACS-to-PACS sync).
`store` opens one association per batch of at most 128 presentation contexts
(one per SOP class for uncompressed files, one per compressed syntax); its
deadline is `timeout_s` per file, a stalled message fails within `timeout_s`,
and a batch cut short after association goes on once more on a new one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from io import BytesIO
from typing import Any, TypeVar

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import build_context, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext

from gateway.core.errors import (
    NotFound,
    SourceError,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.core.settings import SourceConfig
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
from gateway.sources.dimse import query as dq
from gateway.sources.dimse.assoc import (
    STORE_OK,
    STUDY_MOVE,
    VERIFICATION,
    DimseClient,
    Handler,
    Meta,
    SubOperations,
    batches,
    find_contexts,
    get_contexts,
    read_metas,
    store_contexts,
)
from gateway.sources.dimse.records import identifier
from gateway.sources.dimse.stream import End, GetStream, Job
from gateway.sources.resilience import CallStats, Guard

T = TypeVar("T")
CHUNK = 1 << 20
STORE_RESUMES = 1  # new associations a store batch may go on with after a failure
MOVE_DEADLINE_S = 3600.0  # a C-MOVE of a large study; stalls are caught by dimse_timeout


@dataclass
class _StoreProgress:
    """What `store` has done so far, across batches and resumed associations."""

    stored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    size: int = 0
    associated: bool = False  # the current attempt's association was established
    attempt: int = 0  # the attempt that owns `pending`; an abandoned one leaves it alone
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True, slots=True)
class MoveResult:
    """Sub-operations of a C-MOVE as the SCP reported them."""

    completed: int
    failed: int = 0
    warning: int = 0


class DimseSource:
    """A PACS reached over DIMSE (dcmqrscp, Orthanc's DICOM port, any Q/R SCP)."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self._guard = Guard(config)
        self._client = DimseClient(config)
        self._executor = ThreadPoolExecutor(
            max_workers=2 * config.max_concurrency + 2, thread_name_prefix=f"dimse-{config.id}"
        )
        self._streams = asyncio.Semaphore(config.max_concurrency)
        # one store association at a time: dcmqrscp's index lost one instance it had
        # acknowledged in 7 of 40 rounds of two concurrent stores (an update of its
        # multi-process index lost); a batch already carries up to 128 contexts
        self._storing = asyncio.Lock()

    @property
    def id(self) -> str:
        """The configured id."""
        return self.config.id

    @property
    def stats(self) -> CallStats:
        """Timing of this source's calls."""
        return self._guard.stats

    # -- plumbing ------------------------------------------------------------

    async def _in_thread(self, job: Job, fn: Callable[[], T]) -> T:
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        try:
            return await future
        except asyncio.CancelledError:
            job.cancel()
            raise

    def _open(
        self,
        job: Job,
        contexts: list[PresentationContext],
        ext_neg: Sequence[Any],
        handlers: Sequence[Handler],
    ) -> Association:
        assoc = self._client.associate(contexts, ext_neg, handlers)
        job.attach(assoc, self.id)
        return assoc

    def _work(self, job: Job, op: str, assoc: Association, work: Callable[[Association], T]) -> T:
        try:
            return work(assoc)
        except SourceError:
            raise
        except Exception as exc:  # translated at the edge
            raise SourceProtocolError(self.id, f"{op}: {type(exc).__name__}") from None
        finally:
            job.detach()
            self._client.release(assoc)

    async def _call(
        self,
        op: str,
        contexts: list[PresentationContext],
        work: Callable[[Association], T],
        *,
        idempotent: bool = True,
        timeout_s: float | None = None,
    ) -> T:
        async def attempt() -> T:
            job = Job()

            def blocking() -> T:
                return self._work(job, op, self._open(job, contexts, (), ()), work)

            return await self._in_thread(job, blocking)

        return await self._guard.call(op, attempt, idempotent=idempotent, timeout_s=timeout_s)

    # -- PacsSource ----------------------------------------------------------

    async def ping(self) -> float:
        """C-ECHO; milliseconds for connect, associate, echo and release."""
        start = time.perf_counter()
        await self._call("ping", [build_context(VERIFICATION)], self._client.echo)
        return (time.perf_counter() - start) * 1000

    async def find_patients(self, query: PatientQuery) -> list[PatientRecord]:
        """Patients matching `query`, ordered by patient id."""
        return await self._call(
            "find_patients", find_contexts(), lambda a: dq.find_patients(self._client, a, query)
        )

    async def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        """Studies matching `query`, ordered by study UID."""
        return await self._call(
            "find_studies", find_contexts(), lambda a: dq.find_studies(self._client, a, query)
        )

    async def find_series(self, query: SeriesQuery) -> list[SeriesRecord]:
        """Series of the given studies, ordered by (study UID, series UID)."""
        return await self._call(
            "find_series", find_contexts(), lambda a: dq.find_series(self._client, a, query)
        )

    async def find_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        """Instances of one study, ordered by (series UID, instance number, SOP UID)."""
        return await self._call(
            "find_instances", find_contexts(), lambda a: dq.find_instances(self._client, a, query)
        )

    async def retrieve_instance(
        self, study_uid: str, series_uid: str, sop_uid: str
    ) -> AsyncIterator[bytes]:
        """C-GET one instance; yield its Part 10 file in chunks of 1 MiB."""
        keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
        values = dict(zip(keys, (study_uid, series_uid, sop_uid), strict=True))
        async for data in self._get("retrieve_instance", [identifier("IMAGE", keys, values)]):
            view = memoryview(data)
            for i in range(0, len(view), CHUNK):
                yield bytes(view[i : i + CHUNK])

    async def retrieve_study(
        self, study_uid: str, series_uids: Sequence[str] = ()
    ) -> AsyncIterator[bytes]:
        """C-GET a study (or some of its series); yield one Part 10 file per instance."""
        if series_uids:
            keys = ("StudyInstanceUID", "SeriesInstanceUID")
            idents = [
                identifier("SERIES", keys, {"StudyInstanceUID": study_uid, "SeriesInstanceUID": s})
                for s in series_uids
            ]
        else:
            idents = [identifier("STUDY", ("StudyInstanceUID",), {"StudyInstanceUID": study_uid})]
        async for data in self._get("retrieve_study", idents):
            yield data

    async def _get(self, op: str, idents: list[Dataset]) -> AsyncIterator[bytes]:
        async with self._streams:
            stream = GetStream(asyncio.get_running_loop())
            contexts, roles = get_contexts()
            handlers: list[Handler] = [(evt.EVT_C_STORE, stream.on_store)]
            jobs: list[Job] = []

            async def open_assoc() -> Association:
                jobs.append(job := Job())
                return await self._in_thread(
                    job, lambda: self._open(job, contexts, roles, handlers)
                )

            assoc = await self._guard.call(op, open_assoc)
            job = jobs[-1]
            loop = asyncio.get_running_loop()
            loop.run_in_executor(self._executor, self._run_get, job, op, assoc, idents, stream)
            left_early = False
            try:
                while True:
                    try:
                        item = await asyncio.wait_for(stream.queue.get(), self.config.timeout_s)
                    except TimeoutError:
                        raise SourceTimeout(
                            self.id, f"{op}: no instance within {self.config.timeout_s:g}s"
                        ) from None
                    if isinstance(item, bytes):
                        try:
                            yield item
                        except GeneratorExit:
                            left_early = True
                            raise
                        continue
                    self._check_get(op, item, stream.received)
                    return
            finally:
                stream.closed.set()
                if left_early:  # the handler cancels the C-GET; abort if that does not end it
                    loop.call_later(self.config.timeout_s, job.cancel)
                else:
                    job.cancel()

    def _run_get(
        self, job: Job, op: str, assoc: Association, idents: list[Dataset], stream: GetStream
    ) -> None:
        outcome = SubOperations(status=0)
        error: SourceError | None = None

        def work(a: Association) -> SubOperations:
            total = outcome
            for ident in idents:
                sub = self._client.get(a, ident)
                total = SubOperations(
                    status=sub.status if sub.status != 0 else total.status,
                    completed=total.completed + sub.completed,
                    failed=total.failed + sub.failed,
                    warning=total.warning + sub.warning,
                )
            return total

        try:
            outcome = self._work(job, op, assoc, work)
        except SourceError as exc:
            error = exc
        stream.finish(error, outcome)

    def _check_get(self, op: str, end: End, received: int) -> None:
        if end.error is not None:
            raise end.error
        outcome = end.outcome or SubOperations(status=0)
        if received == 0:
            raise NotFound(self.id, f"{op}: nothing held (status 0x{outcome.status:04X})")
        if outcome.failed:
            raise SourceProtocolError(self.id, f"{op}: {outcome.failed} sub-operations failed")

    async def move_study(
        self, study_uid: str, destination_aet: str, *, timeout_s: float | None = None
    ) -> MoveResult:
        """C-MOVE a study to `destination_aet`, which the SCP must know (host, port)."""
        ident = identifier("STUDY", ("StudyInstanceUID",), {"StudyInstanceUID": study_uid})
        sub = await self._call(
            "move_study",
            [build_context(STUDY_MOVE)],
            lambda a: self._client.move(a, ident, destination_aet),
            idempotent=False,
            timeout_s=timeout_s or MOVE_DEADLINE_S,
        )
        if sub.status == 0xA801:
            raise SourceProtocolError(self.id, "C-MOVE: destination AE title unknown to the SCP")
        if sub.status not in (0x0000, 0xB000):
            raise SourceProtocolError(self.id, f"C-MOVE: status 0x{sub.status:04X}")
        if sub.completed + sub.failed + sub.warning == 0:
            raise NotFound(self.id, "C-MOVE: nothing held for this study")
        return MoveResult(sub.completed, sub.failed, sub.warning)

    async def store(self, files: Sequence[bytes]) -> StoreResult:
        """C-STORE Part 10 files; instances already held are accepted again.

        A batch whose association fails after it was established (a response
        lost, the SCP's process dying) goes on, once, on a new association from
        the file left without an answer: storing an instance again is harmless.
        """
        loop = asyncio.get_running_loop()
        metas = await loop.run_in_executor(self._executor, read_metas, self.id, files)
        async with self._storing:
            return await self._store_all(files, metas)

    async def _store_all(self, files: Sequence[bytes], metas: list[Meta]) -> StoreResult:
        progress = _StoreProgress()
        for batch in batches(metas):
            pending = deque(batch)
            contexts = store_contexts((m[1], m[2]) for m in batch)
            for attempt in range(1 + STORE_RESUMES):
                with progress.lock:  # a timed-out attempt's thread may still be storing
                    progress.attempt, progress.associated = attempt, False
                work = partial(self._store_batch, files, pending, progress, attempt)
                deadline = self.config.timeout_s * (1 + len(pending))
                try:
                    await self._call("store", contexts, work, idempotent=False, timeout_s=deadline)
                    break
                except (SourceTimeout, SourceUnavailable):
                    if attempt == STORE_RESUMES or not progress.associated:
                        raise
        return StoreResult(
            stored=tuple(progress.stored), failed=tuple(progress.failed), bytes=progress.size
        )

    def _store_batch(
        self,
        files: Sequence[bytes],
        pending: deque[Meta],
        progress: _StoreProgress,
        attempt: int,
        assoc: Association,
    ) -> None:
        """C-STORE the `pending` files in order; each leaves `pending` once answered, and
        only while `attempt` still owns it (a timed-out attempt's thread may run on)."""
        progress.associated = True
        while True:
            with progress.lock:
                if not pending or progress.attempt != attempt:
                    return
                index, _, _, sop_uid = pending[0]
            status = self._client.store(assoc, dcmread(BytesIO(files[index])))
            with progress.lock:
                if progress.attempt != attempt:
                    return  # the next attempt sends this file again: harmless
                pending.popleft()
                if status in STORE_OK:
                    progress.stored.append(sop_uid)
                    progress.size += len(files[index])
                else:
                    progress.failed.append(sop_uid)

    async def aclose(self) -> None:
        """Stop the thread pool (running calls end at their own timeouts)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["DimseSource", "MoveResult"]
