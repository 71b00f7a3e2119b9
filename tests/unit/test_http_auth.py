"""HTTP plumbing: auth (basic, OAuth2 client credentials with renewal), error translation.

The token endpoint and the archive are `httpx.MockTransport`s here: fault and
auth injection. The same flow against a real token server and a real Orthanc
is in tests/integration/test_http_faults.py.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import pytest

from gateway.core.errors import (
    AuthError,
    NotFound,
    NotSupported,
    SourceError,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.core.settings import SourceConfig
from gateway.core.uids import is_uid
from gateway.sources import dicomjson, matching
from gateway.sources import part10 as p10
from gateway.sources.base import PatientQuery, StudyQuery
from gateway.sources.dicomweb.source import DicomWebSource
from gateway.sources.http import multipart as mp
from gateway.sources.http.client import parse_json, status_error, translate
from gateway.sources.orthanc.source import OrthancSource

BEARER = SourceConfig(
    id="archive",
    kind="dicomweb",
    url="http://archive.test/rs",
    auth="bearer",
    token_url="http://idp.test/token",
    client_id="gateway",
    client_secret="s3cret",
    timeout_s=2,
    retries=0,
)


@dataclass
class TokenServer:
    """Issues tokens `t1`, `t2`, … valid for `expires_in` seconds (as announced)."""

    expires_in: float = 3600
    status: int = 200
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "invalid_client"})
        body = {"access_token": f"t{len(self.requests)}", "expires_in": self.expires_in}
        return httpx.Response(200, json={**body, "token_type": "Bearer"})


class Archive(httpx.AsyncBaseTransport):
    """A DICOMweb archive accepting only the tokens in `valid`.

    A transport of its own rather than `httpx.MockTransport`, which reads the
    request body before the handler and so would make every body replayable.
    """

    def __init__(self, valid: set[str] | None = None) -> None:
        self.valid = {"t1"} if valid is None else valid
        self.seen: list[str | None] = []
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization")
        self.seen.append(auth)
        body = b"".join([chunk async for chunk in request.stream])  # type: ignore[union-attr]
        if auth is None or auth.removeprefix("Bearer ") not in self.valid:
            return httpx.Response(401)
        self.bodies.append(body)
        if request.method == "POST":
            return httpx.Response(200, json=stow_answer(body))
        return httpx.Response(200, json=[])


def stow_answer(body: bytes) -> dict[str, object]:
    """A STOW-RS answer listing every SOP Instance UID of the body."""
    refs = []
    for part in body.split(b"\r\n\r\n")[1:]:
        uid = part.split(b"\r\n")[0].decode()
        refs.append({"00081155": {"vr": "UI", "Value": [uid]}})
    return {"00081199": {"vr": "SQ", "Value": refs}}


def source_for(token: TokenServer, archive: Archive) -> DicomWebSource:
    return DicomWebSource(
        BEARER,
        transport=archive,
        token_transport=httpx.MockTransport(token.handle),
    )


async def test_token_is_fetched_once_and_reused() -> None:
    token, archive = TokenServer(), Archive()
    source = source_for(token, archive)
    for _ in range(3):
        assert await source.find_studies(StudyQuery()) == []
    assert archive.seen == ["Bearer t1"] * 3
    [request] = token.requests
    assert request.method == "POST"
    assert parse_qs(request.content.decode()) == {"grant_type": ["client_credentials"]}
    expected = base64.b64encode(b"gateway:s3cret").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    await source.aclose()


async def test_expiring_token_is_refreshed_before_use() -> None:
    token, archive = TokenServer(expires_in=0.2), Archive(valid={"t1", "t2"})
    source = source_for(token, archive)
    await source.find_studies(StudyQuery())
    await asyncio.sleep(0.25)
    await source.find_studies(StudyQuery())
    assert archive.seen == ["Bearer t1", "Bearer t2"]
    await source.aclose()


async def test_rejected_token_is_renewed_and_the_request_retried_once() -> None:
    token, archive = TokenServer(), Archive(valid={"t2"})
    source = source_for(token, archive)
    assert await source.find_patients(PatientQuery()) == []
    assert archive.seen == ["Bearer t1", "Bearer t2"]
    assert len(token.requests) == 2
    await source.aclose()


async def test_token_refused_twice_is_an_auth_error() -> None:
    token, archive = TokenServer(), Archive(valid=set())
    source = source_for(token, archive)
    with pytest.raises(AuthError):
        await source.find_patients(PatientQuery())
    assert len(archive.seen) == 2 and len(token.requests) == 2
    await source.aclose()


async def test_concurrent_first_calls_share_one_token_fetch() -> None:
    token, archive = TokenServer(), Archive()
    source = source_for(token, archive)
    await asyncio.gather(*(source.find_studies(StudyQuery()) for _ in range(8)))
    assert len(token.requests) == 1
    await source.aclose()


async def test_token_endpoint_failures_are_typed() -> None:
    source = source_for(TokenServer(status=401), Archive())
    with pytest.raises(AuthError):
        await source.find_patients(PatientQuery())

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    down = DicomWebSource(
        BEARER,
        transport=Archive(),
        token_transport=httpx.MockTransport(refuse),
    )
    with pytest.raises(SourceUnavailable):
        await down.find_patients(PatientQuery())

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>")

    odd = DicomWebSource(
        BEARER,
        transport=Archive(),
        token_transport=httpx.MockTransport(garbage),
    )
    with pytest.raises(SourceProtocolError):
        await odd.find_patients(PatientQuery())


def part10(uid: str) -> bytes:
    """Stand-in payload: the mock archive reads the UID from the part's first line."""
    return uid.encode() + b"\r\n" + b"\0" * 1000


async def test_stow_body_is_replayed_after_a_renewal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p10, "sop_instance_uid", lambda d: d.split(b"\r")[0].decode())
    token, archive = TokenServer(), Archive(valid={"t2"})
    source = source_for(token, archive)
    files = [part10(f"1.2.{i}") for i in range(3)]
    result = await source.store(files)
    assert result.stored == ("1.2.0", "1.2.1", "1.2.2") and result.failed == ()
    assert result.bytes == sum(len(f) for f in files)
    [body] = archive.bodies
    boundary = body.split(b"\r\n")[0][2:]
    assert [p async for _, p in mp.iter_parts(_once(body), boundary)] == files
    assert archive.seen == ["Bearer t1", "Bearer t2"]
    await source.aclose()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_streamed_stow_cannot_be_replayed_but_renews(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p10, "sop_instance_uid", lambda d: d.split(b"\r")[0].decode())
    token, archive = TokenServer(), Archive(valid={"t2"})
    source = source_for(token, archive)

    async def files() -> AsyncIterator[bytes]:
        yield part10("1.2.9")

    with pytest.raises(AuthError):
        await source.store_stream(files())
    result = await source.store_stream(files())  # the renewed token now works
    assert result.stored == ("1.2.9",)
    await source.aclose()


async def test_basic_auth_header() -> None:
    seen: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"Version": "1.10.1"})

    config = SourceConfig(
        id="o", kind="orthanc", url="http://orthanc.test", username="u", password="p", auth="basic"
    )
    source = OrthancSource(config, transport=httpx.MockTransport(handle))
    assert await source.ping() > 0
    assert seen == ["Basic " + base64.b64encode(b"u:p").decode()]
    await source.aclose()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, SourceProtocolError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFound),
        (405, NotSupported),
        (408, SourceTimeout),
        (429, SourceUnavailable),
        (500, SourceProtocolError),
        (501, NotSupported),
        (502, SourceUnavailable),
        (503, SourceUnavailable),
        (504, SourceTimeout),
        (302, SourceProtocolError),
    ],
)
def test_status_translation(status: int, error: type[SourceError]) -> None:
    err = status_error(status, "src", "find_studies")
    assert type(err) is error
    assert str(err) == f"src: find_studies: HTTP {status}"


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectError("refused"), SourceUnavailable),
        (httpx.ConnectTimeout("slow"), SourceTimeout),
        (httpx.ReadTimeout("slow"), SourceTimeout),
        (httpx.PoolTimeout("busy"), SourceTimeout),
        (httpx.ReadError("reset"), SourceUnavailable),
        (httpx.RemoteProtocolError("bad"), SourceProtocolError),
        (httpx.DecodingError("bad"), SourceProtocolError),
        (httpx.UnsupportedProtocol("ftp"), SourceProtocolError),
    ],
)
def test_transport_error_translation(exc: httpx.HTTPError, error: type[SourceError]) -> None:
    assert type(translate(exc, "src", "op")) is error


async def test_errors_never_carry_patient_data() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"Message": f"failed on {request.url}"})

    config = SourceConfig(id="d", kind="dicomweb", url="http://archive.test/rs", retries=0)
    source = DicomWebSource(config, transport=httpx.MockTransport(fail))
    with pytest.raises(SourceProtocolError) as caught:
        await source.find_patients(PatientQuery(name="Secret^Patient", patient_id="ID-4711"))
    assert "Secret" not in str(caught.value) and "4711" not in str(caught.value)


def test_parse_json() -> None:
    def response(body: bytes) -> httpx.Response:
        return httpx.Response(200, content=body)

    assert parse_json(response(b""), "s", "op") is None
    assert parse_json(response(b'{"a": 1}'), "s", "op") == {"a": 1}
    for garbage in (b"\x00\xff garbage", b"{not json", b"\xff\xfe"):
        with pytest.raises(SourceProtocolError):
            parse_json(response(garbage), "s", "op")


# -- DICOM JSON helpers used at the HTTP edge ----------------------------------------


@pytest.mark.parametrize(
    ("value", "open_ended", "key"),
    [
        (None, False, None),
        ("*", False, None),
        ("P001", False, "P001"),
        ("smith", True, "smith*"),
        ("SMITH^J*", True, "SMITH^J*"),
        ("O'Brien^Pat Rick", True, "O?Brien^Pat?Rick*"),
        ("CT HEAD, NECK", False, "CT?HEAD??NECK"),
        ("a\\b&c=d%e+f", False, "a?b?c?d?e?f"),
        ("Müller^Jürgen", True, "M*"),
        ("MÜLLER", False, "M*"),
        ("Ωμέγα*", True, None),
    ],
)
def test_widen_gives_literal_superset_keys(
    value: str | None, open_ended: bool, key: str | None
) -> None:
    assert matching.widen(value, open_ended) == key


def test_uid_lists() -> None:
    assert is_uid("1.2.840.10008.1.2.1") and is_uid("0.1")
    for bad in ("", "1..2", "1.02", "1.2.*", "../1", "1." + "2" * 64, "1.2\\3"):
        assert not is_uid(bad), bad
    assert matching.uid_list(()) == ()
    assert matching.uid_list(("1.2", "x")) == ("1.2",)
    assert matching.uid_list(("x",)) is None


def test_stow_outcome_counts_duplicates_as_stored() -> None:
    def ref(uid: str, reason: int | None = None) -> dict[str, object]:
        item: dict[str, object] = {"00081155": {"vr": "UI", "Value": [uid]}}
        if reason is not None:
            item["00081197"] = {"vr": "US", "Value": [reason]}
        return item

    answer = {
        "00081199": {"vr": "SQ", "Value": [ref("1.1")]},
        "00081198": {"vr": "SQ", "Value": [ref("1.2", 0x0111), ref("1.3", 0xA700)]},
    }
    assert dicomjson.stow_outcome(answer) == ({"1.1", "1.2"}, {"1.3"})
    assert dicomjson.stow_outcome(None) == (set(), set())
    assert dicomjson.stow_outcome({"00081199": {"vr": "SQ"}}) == (set(), set())
