"""Faults of HTTP archives, each a typed error within the configured timeout plus a margin.

Real servers wherever possible: a stopped Orthanc of a private stack, a local
token endpoint issuing short-lived tokens in front of the real "dcm4chee"
Orthanc. The hanging, failing and garbage-speaking archives are small asyncio
listeners on loopback (fault injection).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from gateway.core.errors import (
    AuthError,
    CircuitOpen,
    SourceError,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.core.settings import SourceConfig
from gateway.devstack.stack import LocalStack
from gateway.sources.base import PacsSource, PatientQuery, StudyQuery
from gateway.sources.dicomweb.source import DicomWebSource
from gateway.sources.orthanc.source import OrthancSource

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0
MARGIN_S = 1.0  # generous: CI machines are shared and noisy
Reply = tuple[int, dict[str, str], bytes]
Handler = Callable[[str, str, dict[str, str], bytes], Awaitable[Reply | None]]


class MiniHttp:
    """A tiny HTTP/1.1 server on loopback; a handler returning None never answers."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[tuple[str, str]] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> MiniHttp:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.append(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((method, path))
                reply = await self.handler(method, path, headers, body)
                if reply is None:
                    await asyncio.Event().wait()  # accept, read, never answer
                    return
                status, extra, content = reply
                fields = {"Content-Length": str(len(content)), **extra}
                head_out = f"HTTP/1.1 {status} X\r\n" + "".join(
                    f"{k}: {v}\r\n" for k, v in fields.items()
                )
                writer.write(head_out.encode("latin-1") + b"\r\n" + content)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


def config(kind: str, url: str, **overrides: object) -> SourceConfig:
    values: dict[str, object] = {
        "id": f"{kind}-under-test",
        "kind": kind,
        "url": url,
        "dialect": "orthanc" if kind == "dicomweb" else "generic",
        "timeout_s": TIMEOUT_S,
        "connect_timeout_s": 0.5,
        "retries": 0,
        "breaker_threshold": 100,
    }
    values.update(overrides)
    return SourceConfig(**values)  # type: ignore[arg-type]


def adapter(kind: str, url: str, **overrides: object) -> PacsSource:
    cfg = config(kind, url, **overrides)
    return OrthancSource(cfg) if kind == "orthanc" else DicomWebSource(cfg)


async def timed(call: Awaitable[object]) -> tuple[BaseException | None, float]:
    start = time.perf_counter()
    try:
        await call
    except SourceError as exc:
        return exc, time.perf_counter() - start
    return None, time.perf_counter() - start


KINDS = ["orthanc", "dicomweb"]


# -- archive stopped: connection refused --------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_stopped_archive_is_unavailable(private_stack: LocalStack, kind: str) -> None:
    info = private_stack.info
    assert info is not None
    url = info.orthanc_url if kind == "orthanc" else info.orthanc_url + "/dicom-web"
    source = adapter(kind, url, retries=2, breaker_threshold=3, breaker_cooldown_s=0.3)
    await source.find_patients(PatientQuery())
    private_stack.stop_service("orthanc")
    try:
        error, elapsed = await timed(source.find_patients(PatientQuery()))
        assert type(error) is SourceUnavailable, error
        assert elapsed < TIMEOUT_S + MARGIN_S  # three refused attempts and two backoffs
        error, elapsed = await timed(source.ping())
        assert isinstance(error, CircuitOpen) and elapsed < 0.3
    finally:
        private_stack.start_service("orthanc")
    await asyncio.sleep(0.3)  # breaker cool-down, then one probe closes it
    assert await source.ping() > 0
    await source.aclose()


# -- archive hanging: accepts, never answers ------------------------------------------


async def never(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply | None:
    return None


@pytest.mark.parametrize("kind", KINDS)
async def test_hanging_archive_times_out(kind: str) -> None:
    async with MiniHttp(never) as hang:
        source = adapter(kind, hang.url)
        error, elapsed = await timed(source.find_studies(StudyQuery()))
        assert type(error) is SourceTimeout, error
        assert TIMEOUT_S - 0.05 < elapsed < TIMEOUT_S + MARGIN_S
        # With retries the guard's deadline is per attempt: (1 + retries) x timeout + backoff.
        patient = adapter(kind, hang.url, retries=1)
        error, elapsed = await timed(patient.find_patients(PatientQuery()))
        assert type(error) is SourceTimeout
        assert elapsed < 2 * TIMEOUT_S + 0.1 + MARGIN_S
        await source.aclose()
        await patient.aclose()


async def test_archive_stalling_mid_body_times_out() -> None:
    async def stall(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        ctype = 'multipart/related; type="application/dicom"; boundary=b'
        head = b"--b\r\nContent-Type: application/dicom\r\n\r\nDICM"
        return 200, {"Content-Type": ctype, "Content-Length": "100000"}, head

    async with MiniHttp(stall) as server:
        source = DicomWebSource(config("dicomweb", server.url))
        start = time.perf_counter()
        with pytest.raises(SourceTimeout):
            async for _ in source.retrieve_study("1.2.3"):
                pass
        assert time.perf_counter() - start < TIMEOUT_S + MARGIN_S
        await source.aclose()


async def test_hanging_archive_does_not_block_another(private_stack: LocalStack) -> None:
    info = private_stack.info
    assert info is not None
    healthy = [
        adapter("orthanc", info.orthanc_url),
        adapter("dicomweb", info.dcm4chee_url, dialect="dcm4chee"),
    ]
    async with MiniHttp(never) as hang:
        stuck = [adapter(kind, hang.url, max_concurrency=1) for kind in KINDS]
        pending = [
            asyncio.create_task(s.find_studies(StudyQuery())) for s in stuck for _ in range(3)
        ]
        await asyncio.sleep(0.05)
        start = time.perf_counter()
        for source in healthy:
            await source.find_studies(StudyQuery())
            await source.ping()
        assert time.perf_counter() - start < 0.9  # less than the hung ones' timeout
        assert not any(task.done() for task in pending)
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, SourceTimeout) for r in results)
        for source in [*healthy, *stuck]:
            await source.aclose()


# -- archive answering 500, 503 --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_archive_answering_500(kind: str) -> None:
    async def fail(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        return 500, {"Content-Type": "application/json"}, b'{"Message": "Internal error"}'

    async with MiniHttp(fail) as server:
        source = adapter(kind, server.url, retries=2)
        error, elapsed = await timed(source.find_patients(PatientQuery(name="Doe^Jane")))
        assert type(error) is SourceProtocolError, error
        assert "HTTP 500" in str(error) and "Doe" not in str(error)
        assert elapsed < TIMEOUT_S and len(server.requests) == 1  # not retried
        await source.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_archive_answering_503_is_retried(kind: str) -> None:
    async def busy(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        return 503, {}, b""

    async with MiniHttp(busy) as server:
        source = adapter(kind, server.url, retries=2)
        error, elapsed = await timed(source.find_patients(PatientQuery(patient_id="P1")))
        assert type(error) is SourceUnavailable  # one request per call: 1 + 2 retries
        assert len(server.requests) == 3 and elapsed < TIMEOUT_S + MARGIN_S
        await source.aclose()


async def test_a_failing_request_cancels_its_concurrent_sibling() -> None:
    async def split(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply | None:
        if path.startswith("/series"):
            return None  # hangs
        return 500, {}, b""

    async with MiniHttp(split) as server:
        source = OrthancSource(config("orthanc", server.url))
        error, elapsed = await timed(source.find_studies(StudyQuery()))  # studies + series
        assert type(error) is SourceProtocolError and elapsed < 0.3
        await source.aclose()


# -- garbage bodies ------------------------------------------------------------------


def garbage(content_type: str, body: bytes) -> Handler:
    async def handle(method: str, path: str, headers: dict[str, str], _: bytes) -> Reply:
        return 200, {"Content-Type": content_type}, body

    return handle


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "body", [b"\x00\x01garbage\xff", b"<html>proxy error</html>", b'{"not": "a list"}', b"[1, 2]"]
)
async def test_garbage_query_answer(kind: str, body: bytes) -> None:
    async with MiniHttp(garbage("application/json", body)) as server:
        source = adapter(kind, server.url)
        error, elapsed = await timed(source.find_studies(StudyQuery()))
        assert type(error) is SourceProtocolError, error
        assert elapsed < TIMEOUT_S
        await source.aclose()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/related; boundary=b", b"\x00garbage without any boundary"),
        ("multipart/related; boundary=b", b"--b\r\nContent-Type: application/dicom\r\n\r\ncut"),
        ("text/html", b"<html>login page</html>"),
    ],
)
async def test_garbage_retrieve_answer(content_type: str, body: bytes) -> None:
    async with MiniHttp(garbage(content_type, body)) as server:
        source = DicomWebSource(config("dicomweb", server.url))
        with pytest.raises(SourceProtocolError):
            async for _ in source.retrieve_study("1.2.3"):
                pass
        with pytest.raises(SourceProtocolError):
            async for _ in source.retrieve_instance("1.2.3", "1.2.3.4", "1.2.3.4.5"):
                pass
        await source.aclose()


# -- expired bearer token ------------------------------------------------------------


@dataclass
class TokenIssuer:
    """An OAuth2 token endpoint; the archive honours each token for `lifetime_s` only."""

    lifetime_s: float
    announce_s: float = 3600.0
    issued: dict[str, float] = field(default_factory=dict)

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if method != "POST" or b"grant_type=client_credentials" not in body:
            return 400, {"Content-Type": "application/json"}, b'{"error": "invalid_request"}'
        if not headers.get("authorization", "").startswith("Basic "):
            return 401, {"Content-Type": "application/json"}, b'{"error": "invalid_client"}'
        token = f"token-{len(self.issued) + 1}"
        self.issued[token] = time.monotonic()
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": self.announce_s}
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()

    def valid(self, token: str) -> bool:
        issued = self.issued.get(token)
        return issued is not None and time.monotonic() - issued < self.lifetime_s


class BearerGate(httpx.AsyncBaseTransport):
    """Auth injection in front of the real archive: 401 unless the bearer token is valid."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer
        self.inner = httpx.AsyncHTTPTransport()
        self.rejected = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not self.issuer.valid(token):
            self.rejected += 1
            async for _ in request.stream:  # type: ignore[union-attr]
                pass  # a real server reads (or drops) the upload before answering
            return httpx.Response(401, headers={"WWW-Authenticate": "Bearer"})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def tiny_instance(key: int) -> bytes:
    ds = Dataset()
    ds.PatientID, ds.PatientName = f"TOK{key}", "Token^Test"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1010.{key}"
    ds.SeriesInstanceUID = f"{ds.StudyInstanceUID}.1"
    ds.SOPInstanceUID = f"{ds.SeriesInstanceUID}.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.Modality = "OT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest_asyncio.fixture(loop_scope="session")
async def issuer() -> AsyncIterator[tuple[TokenIssuer, MiniHttp]]:
    tokens = TokenIssuer(lifetime_s=0.5)
    async with MiniHttp(tokens.handle) as server:
        yield tokens, server


def bearer_source(url: str, token_url: str, gate: BearerGate) -> DicomWebSource:
    cfg = config(
        "dicomweb",
        url,
        dialect="dcm4chee",
        auth="bearer",
        token_url=token_url + "/token",
        client_id="gateway",
        client_secret="secret",
    )
    return DicomWebSource(cfg, transport=gate)


async def test_expired_bearer_token_is_renewed_and_retried_once(
    private_stack: LocalStack, issuer: tuple[TokenIssuer, MiniHttp]
) -> None:
    info = private_stack.info
    assert info is not None
    tokens, server = issuer
    gate = BearerGate(tokens)
    source = bearer_source(info.dcm4chee_url, server.url, gate)
    assert (await source.store([tiny_instance(1)])).stored
    assert [s.patient_id for s in await source.find_studies(StudyQuery(patient_id="TOK1"))] == [
        "TOK1"
    ]
    assert list(tokens.issued) == ["token-1"] and gate.rejected == 0

    await asyncio.sleep(0.6)  # the archive now refuses token-1; the client cannot know
    error, elapsed = await timed(source.find_studies(StudyQuery(patient_id="TOK1")))
    assert error is None and elapsed < TIMEOUT_S + MARGIN_S
    assert list(tokens.issued) == ["token-1", "token-2"] and gate.rejected == 1

    await asyncio.sleep(0.6)  # a STOW body given as a sequence is sent again after renewal
    result = await source.store([tiny_instance(2), tiny_instance(3)])
    assert len(result.stored) == 2 and not result.failed
    assert len(tokens.issued) == 3 and gate.rejected == 2
    await source.aclose()
    await gate.aclose()


async def test_expired_token_with_a_streamed_upload(
    private_stack: LocalStack, issuer: tuple[TokenIssuer, MiniHttp]
) -> None:
    info = private_stack.info
    assert info is not None
    tokens, server = issuer
    gate = BearerGate(tokens)
    source = bearer_source(info.dcm4chee_url, server.url, gate)
    await source.ping()
    await asyncio.sleep(0.6)

    async def files() -> AsyncIterator[bytes]:
        yield tiny_instance(4)

    with pytest.raises(AuthError):  # the one-shot body cannot be resent, but the token is renewed
        await source.store_stream(files())
    assert len(tokens.issued) == 2
    assert (await source.store_stream(files())).stored
    await source.aclose()
    await gate.aclose()


async def test_token_announced_as_short_lived_is_refreshed_before_use(
    private_stack: LocalStack,
) -> None:
    info = private_stack.info
    assert info is not None
    tokens = TokenIssuer(lifetime_s=0.5, announce_s=0.5)
    async with MiniHttp(tokens.handle) as server:
        gate = BearerGate(tokens)
        source = bearer_source(info.dcm4chee_url, server.url, gate)
        for _ in range(3):
            await source.ping()
            await asyncio.sleep(0.3)
        assert gate.rejected == 0 and len(tokens.issued) >= 2
        await source.aclose()
        await gate.aclose()


async def test_refused_client_credentials_are_an_auth_error(private_stack: LocalStack) -> None:
    info = private_stack.info
    assert info is not None

    async def refuse(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        return 401, {"Content-Type": "application/json"}, b'{"error": "invalid_client"}'

    async with MiniHttp(refuse) as server:
        gate = BearerGate(TokenIssuer(lifetime_s=0.5))
        source = bearer_source(info.dcm4chee_url, server.url, gate)
        error, elapsed = await timed(source.ping())
        assert type(error) is AuthError and elapsed < TIMEOUT_S
        assert "secret" not in str(error)
        await source.aclose()
        await gate.aclose()


class LosesFirstStores(httpx.AsyncBaseTransport):
    """The real archive behind httpx's transport, except that the first `n` stores are lost
    the way a reused connection the archive has just closed loses them: before a byte of
    the request reaches it."""

    def __init__(self, n: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.left = n
        self.stores = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/instances":
            self.stores += 1
            if self.left > 0:
                self.left -= 1
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("files", [1, 3], ids=["one file", "a ZIP"])
async def test_a_store_lost_on_a_closed_connection_is_sent_again(
    private_stack: LocalStack, files: int
) -> None:
    info = private_stack.info
    assert info is not None
    lossy = LosesFirstStores(1)
    cfg = config("orthanc", info.orthanc_url, retries=2, timeout_s=10)
    source = OrthancSource(cfg, transport=lossy)
    try:
        data = [tiny_instance(100 + 10 * files + i) for i in range(files)]
        result = await source.store(data)
        assert len(result.stored) == files and not result.failed
        assert lossy.stores == 2, "sent once more, not given up"
        again = await source.store(data)  # what a retry after a lost answer meets
        assert len(again.stored) == files and not again.failed
    finally:
        await source.aclose()
