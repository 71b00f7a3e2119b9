"""DimseSource faults: each gives a typed error within the configured timeout plus a margin.

Real dcmqrscp (stopped, or asked for an unknown called AE title), a listener
of our own that accepts and never answers, a raw listener that aborts the
association, and small pynetdicom SCPs that hang or abort mid-operation.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.transport import ThreadedAssociationServer

from gateway.core.errors import (
    CircuitOpen,
    SourceError,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.core.settings import SourceConfig
from gateway.devstack.stack import LocalStack
from gateway.sources.base import PatientQuery, StudyQuery
from gateway.sources.dimse.assoc import (
    PATIENT_FIND,
    STUDY_FIND,
    STUDY_GET,
    VERIFICATION,
    DimseClient,
)
from gateway.sources.dimse.source import DimseSource
from tests.integration.test_http_adapters import instance, sop_uid

pytestmark = pytest.mark.integration
TIMEOUT = 1.0
MARGIN = 1.0  # generous: CI machines are shared and noisy


def dimse(port: int, called_aet: str = "ANY-SCP", **kw: Any) -> DimseSource:
    base = SourceConfig(
        id="faulty",
        kind="dimse",
        host="127.0.0.1",
        port=port,
        called_aet=called_aet,
        timeout_s=TIMEOUT,
        connect_timeout_s=0.5,
        retries=0,
    )
    return DimseSource(replace(base, **kw))


async def timed(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    start = time.perf_counter()
    try:
        await call()
    except SourceError as exc:
        return exc, time.perf_counter() - start
    return None, time.perf_counter() - start


async def drain(source: DimseSource) -> None:
    async for _ in source.retrieve_study("1.2.3"):
        pass


@pytest.fixture
def hanging_listener() -> Iterator[int]:
    """Accepts TCP connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def aborting_listener() -> Iterator[int]:
    """Answers every A-ASSOCIATE-RQ with an A-ABORT PDU (PS3.8 9.3.8)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def rejecting_scp() -> Iterator[int]:
    """A pynetdicom SCP that rejects any called AE title but its own."""
    ae = AE("GOODAET")
    ae.require_called_aet = True
    ae.add_supported_context(VERIFICATION)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    yield int(server.server_address[1])
    server.shutdown()


class Scp:
    """A pynetdicom SCP whose C-FIND / C-GET handlers misbehave."""

    def __init__(self, handlers: list[tuple[Any, Callable[..., Any]]]) -> None:
        self.release = threading.Event()
        ae = AE("BADSCP")
        for uid in (VERIFICATION, PATIENT_FIND, STUDY_FIND, STUDY_GET):
            ae.add_supported_context(uid)
        self.server: ThreadedAssociationServer = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=handlers
        )
        self.port = int(self.server.server_address[1])

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def scp_factory() -> Iterator[Callable[[str], Scp]]:
    made: list[Scp] = []

    def make(kind: str) -> Scp:
        box: dict[str, Scp] = {}

        def hang(event: evt.Event) -> Iterator[Any]:
            box["scp"].release.wait(30)
            yield 0x0000, None

        def abort(event: evt.Event) -> Iterator[Any]:
            event.assoc.abort()
            yield 0x0000, None

        def get_then_hang(event: evt.Event) -> Iterator[Any]:
            yield 1
            box["scp"].release.wait(30)
            yield 0xA702, None

        handlers = {
            "hang": [(evt.EVT_C_FIND, hang)],
            "abort": [(evt.EVT_C_FIND, abort)],
            "get-hang": [(evt.EVT_C_GET, get_then_hang)],
        }[kind]
        scp = box["scp"] = Scp(handlers)
        made.append(scp)
        return scp

    yield make
    for scp in made:
        scp.stop()


async def test_association_rejected(rejecting_scp: int) -> None:
    source = dimse(rejecting_scp, "WRONGAET")
    err, elapsed = await timed(source.ping)
    assert isinstance(err, SourceProtocolError)
    assert "rejected (permanent)" in str(err)
    assert "Called AE title not recognised" in str(err)
    assert elapsed < TIMEOUT + MARGIN
    await source.aclose()


async def test_dcmqrscp_unknown_called_aet_fails_fast(private_stack: LocalStack) -> None:
    # dcmqrscp 3.6.7 sends A-ASSOCIATE-RJ, but now and then closes the connection
    # first ("Association Reject Failed ... state 1 event 7" in its log): either
    # way a typed error at once, never a timeout.
    assert private_stack.info is not None
    source = dimse(private_stack.info.legacy_port, "NOSUCHAET")
    err, elapsed = await timed(source.ping)
    assert isinstance(err, SourceProtocolError | SourceUnavailable), err
    assert "rejected (permanent)" in str(err) or "closed by the peer" in str(err)
    assert elapsed < MARGIN
    await source.aclose()


async def test_archive_stopped_is_unavailable(private_stack: LocalStack) -> None:
    assert private_stack.info is not None
    source = dimse(private_stack.info.legacy_port, "DCMQRSCP")
    assert await source.ping() > 0
    private_stack.stop_service("legacy")
    try:
        err, elapsed = await timed(source.ping)
        assert isinstance(err, SourceUnavailable)
        assert "refused" in str(err), err  # no forked dcmqrscp child outlived it
        assert elapsed < TIMEOUT + MARGIN
        err, _ = await timed(lambda: source.find_studies(StudyQuery()))
        assert isinstance(err, SourceUnavailable)
    finally:
        private_stack.start_service("legacy")
    assert await source.ping() > 0
    await source.aclose()


async def test_hanging_listener_times_out(hanging_listener: int) -> None:
    source = dimse(hanging_listener)
    for call in (source.ping, lambda: source.find_patients(PatientQuery()), lambda: drain(source)):
        err, elapsed = await timed(call)
        assert isinstance(err, SourceTimeout), err
        assert TIMEOUT * 0.9 < elapsed < TIMEOUT + MARGIN
    await source.aclose()


async def test_retries_stay_bounded(hanging_listener: int) -> None:
    source = dimse(hanging_listener, retries=2)
    err, elapsed = await timed(source.ping)
    assert isinstance(err, SourceTimeout)
    assert elapsed < TIMEOUT + MARGIN  # one deadline covers every attempt and backoff
    assert 1 <= source.stats.calls <= 3
    await source.aclose()


async def test_association_aborted(aborting_listener: int) -> None:
    source = dimse(aborting_listener)
    err, elapsed = await timed(source.ping)
    assert isinstance(err, SourceUnavailable)
    assert "aborted" in str(err)
    assert elapsed < TIMEOUT + MARGIN
    await source.aclose()


async def test_abort_during_find(scp_factory: Callable[[str], Scp]) -> None:
    source = dimse(scp_factory("abort").port)
    err, elapsed = await timed(lambda: source.find_studies(StudyQuery()))
    assert isinstance(err, SourceUnavailable)
    assert elapsed < TIMEOUT + MARGIN
    await source.aclose()


async def test_scp_hanging_after_association(scp_factory: Callable[[str], Scp]) -> None:
    source = dimse(scp_factory("hang").port)
    assert await source.ping() > 0  # associates and echoes fine
    err, elapsed = await timed(lambda: source.find_studies(StudyQuery()))
    assert isinstance(err, SourceTimeout)
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + MARGIN
    await source.aclose()


async def test_scp_hanging_during_retrieval(scp_factory: Callable[[str], Scp]) -> None:
    source = dimse(scp_factory("get-hang").port)
    err, elapsed = await timed(lambda: drain(source))
    assert isinstance(err, SourceTimeout)
    assert "no instance" in str(err)
    assert elapsed < 2 * TIMEOUT + MARGIN  # association, then the first instance
    await source.aclose()


async def test_hanging_archive_does_not_block_others(
    private_stack: LocalStack, hanging_listener: int
) -> None:
    assert private_stack.info is not None
    hanging = dimse(hanging_listener, max_concurrency=2)
    healthy = dimse(private_stack.info.legacy_port, "DCMQRSCP", id="healthy", timeout_s=5)
    lags: list[float] = []
    # a plain thread's pauses: what a shared machine takes from the whole process
    stalls: list[float] = []
    done = threading.Event()

    def reference() -> None:
        while not done.is_set():
            start = time.perf_counter()
            time.sleep(0.01)
            stalls.append(time.perf_counter() - start - 0.01)

    async def ticker() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - start - 0.01)

    beside = threading.Thread(target=reference, daemon=True)
    beside.start()
    tick = asyncio.create_task(ticker())
    stuck = [asyncio.create_task(timed(hanging.ping)) for _ in range(6)]
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    for _ in range(5):
        await healthy.find_studies(StudyQuery(study_date="19000101"))
        await healthy.ping()
    fast = time.perf_counter() - start
    results = await asyncio.gather(*stuck)
    tick.cancel()
    done.set()
    beside.join()
    # queued behind the hung pings it would take 3 s
    assert fast < 2.0, f"healthy source took {fast:.2f}s beside a hung one"
    assert all(isinstance(err, SourceTimeout) for err, _ in results)
    assert max(elapsed for _, elapsed in results) < 3 * TIMEOUT + MARGIN  # 2 at a time
    # a blocking call on the loop stalls it, not the thread beside it
    assert max(lags) < 0.3 + max(stalls), "the event loop was blocked"
    await hanging.aclose()
    await healthy.aclose()


def test_answer_taken_by_the_reactor_is_given_back(private_stack: LocalStack) -> None:
    """pynetdicom's reactor can take a C-STORE/C-FIND answer from under send_*()."""
    assert private_stack.info is not None
    client = DimseClient(dimse(private_stack.info.legacy_port, "DCMQRSCP").config)
    assoc = client.associate([build_context(VERIFICATION)])
    try:
        queued = C_ECHO()
        queued.MessageIDBeingRespondedTo, queued.Status = 1, 0xFF00
        assoc.dimse.msg_queue.put((1, queued))
        stolen = C_ECHO()
        stolen.MessageIDBeingRespondedTo, stolen.Status = 1, 0x0000
        assoc._serve_request(stolen, 1)  # what the racing reactor does with it
        assert assoc.dimse.get_msg(block=False) == (1, stolen)  # back, and first
        assert assoc.dimse.get_msg(block=False) == (1, queued)
        client.echo(assoc)  # the association still works
    finally:
        client.release(assoc)


async def test_breaker_opens_after_repeated_failures(hanging_listener: int) -> None:
    source = dimse(hanging_listener, breaker_threshold=2, breaker_cooldown_s=60)
    for _ in range(2):
        err, _ = await timed(source.ping)
        assert isinstance(err, SourceTimeout)
    err, elapsed = await timed(source.ping)
    assert isinstance(err, CircuitOpen)
    assert elapsed < 0.3  # no 1 s timeout waited for
    await source.aclose()


async def test_store_goes_on_after_a_lost_response() -> None:
    """A C-STORE response that never comes: the batch goes on, once, on a new association."""
    received: list[str] = []
    release = threading.Event()

    def on_store(event: evt.Event) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        if len(received) == 2:  # the second file's response is lost
            release.wait(3 * TIMEOUT)
        return 0x0000

    ae = AE("STORESCP")
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    handlers = [(evt.EVT_C_STORE, on_store)]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    source = dimse(int(server.server_address[1]))
    patient, study = ("LOST", "Lost^Response", "19700101", "O"), ("1", "20240101", "Lost", "L1")
    files = [instance(patient, study, ("1", "CT", 1), number) for number in (1, 2, 3)]
    sops = [sop_uid(f) for f in files]
    try:
        start = time.perf_counter()
        result = await source.store(files)
        elapsed = time.perf_counter() - start
    finally:
        release.set()
        server.shutdown()
        await source.aclose()
    assert result.stored == tuple(sops) and result.failed == ()
    assert received == [sops[0], sops[1], sops[1], sops[2]]
    assert elapsed < TIMEOUT + MARGIN + 1.0, f"{elapsed:.2f}s"


async def test_store_against_a_hanging_archive_is_not_resumed(hanging_listener: int) -> None:
    source = dimse(hanging_listener)
    err, elapsed = await timed(lambda: source.store([instance_file()]))
    assert isinstance(err, SourceTimeout)
    assert elapsed < TIMEOUT + MARGIN
    await source.aclose()


def instance_file() -> bytes:
    return instance(
        ("HANG", "Hang^Ing", "19700101", "O"), ("1", "20240101", "H", "H1"), ("1", "CT", 1), 1
    )


def test_a_timed_out_store_attempt_leaves_the_files_to_the_next_one() -> None:
    """A store attempt abandoned at its deadline runs on in its thread; once the next
    attempt owns the pending files, the old thread neither takes one off nor counts it, so
    no file is lost between the two (each is sent again: harmless)."""
    from collections import deque

    from gateway.sources.dimse.source import _StoreProgress

    files = [instance_file(), instance_file()]
    pending = deque([(0, CTImageStorage, ExplicitVRLittleEndian, "1.2.3.1"), (1, "", "", "1.2")])
    progress = _StoreProgress()
    source = DimseSource.__new__(DimseSource)

    class Client:
        bump = True

        def store(self, assoc: Any, dataset: Any) -> int:
            if self.bump:  # meanwhile the deadline passed and attempt 1 began
                progress.attempt, self.bump = 1, False
            return 0x0000

    source._client = Client()  # type: ignore[assignment]
    source._store_batch(files, pending, progress, 0, None)  # type: ignore[arg-type]
    assert len(pending) == 2
    assert progress.stored == [] and progress.failed == []
    source._store_batch(files, pending, progress, 1, None)  # type: ignore[arg-type]
    assert not pending
    assert progress.stored == ["1.2.3.1", "1.2"]
