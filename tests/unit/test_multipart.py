"""Streaming multipart/related: parse in arbitrary chunkings, compose without copying."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable

import pytest

from gateway.sources.http import multipart as mp

BOUNDARY = "pacs-gateway-test-boundary"


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def compose_bytes(parts: Iterable[bytes], boundary: str = BOUNDARY) -> bytes:
    return b"".join([c async for c in mp.compose(parts, boundary)])


PARTS = [
    b"",
    b"x",
    b"\r\n--" + BOUNDARY.encode()[:-1] + b"\r\n",  # almost a delimiter, split anywhere
    b"--" + BOUNDARY.encode() + b"X",  # a boundary not preceded by CRLF is data
    os.urandom(70_000),
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4096, 65536, 10**7])
async def test_round_trip_in_any_chunking(size: int) -> None:
    body = await compose_bytes(PARTS)
    got = [p async for p in mp.iter_parts(chunked(body, size), BOUNDARY.encode())]
    assert [data for _, data in got] == PARTS
    assert all(headers == {"content-type": "application/dicom"} for headers, _ in got)


async def test_preamble_epilogue_padding_and_bare_parts() -> None:
    body = (
        b"preamble to ignore\r\n--B  \t\r\n"
        b"Content-Type: application/dicom\r\nContent-Length: 3\r\n\r\nabc"
        b"\r\n--B\r\n\r\nno headers\r\n--B--\r\nepilogue\r\n--B\r\nignored"
    )
    for size in (1, 5, len(body)):
        got = [p async for p in mp.iter_parts(chunked(body, size), b"B")]
        assert got == [
            ({"content-type": "application/dicom", "content-length": "3"}, b"abc"),
            ({}, b"no headers"),
        ]


async def test_orthanc_shaped_body_without_leading_crlf() -> None:
    body = b"--B\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n--B--\r\n"
    assert [p async for _, p in mp.iter_parts(chunked(body, 3), b"B")] == [b"DICM"]


@pytest.mark.parametrize(
    "body",
    [
        b"--B\r\nContent-Type: application/dicom\r\n\r\ntruncated",
        b"--B\r\nContent-Type: application/dicom\r\n\r\nno close\r\n--B\r\n",
        b"no boundary at all",
        b"",
    ],
)
async def test_truncated_bodies_raise(body: bytes) -> None:
    with pytest.raises(mp.MultipartError):
        _ = [p async for p in mp.iter_parts(chunked(body, 4), b"B")]


async def test_garbage_after_boundary_and_bad_headers_raise() -> None:
    with pytest.raises(mp.MultipartError):
        _ = [p async for p in mp.iter_parts(chunked(b"--Bjunk\r\n\r\nx\r\n--B--", 2), b"B")]
    with pytest.raises(mp.MultipartError):
        _ = [p async for p in mp.iter_parts(chunked(b"--B\r\nnocolon\r\n\r\nx\r\n--B--", 2), b"B")]
    parser = mp.MultipartParser(b"B")
    with pytest.raises(mp.MultipartError):
        parser.feed(b"--B\r\n" + b"X" * (mp.MAX_HEADER_BYTES + 10))


async def test_parser_holds_one_chunk_only() -> None:
    parser = mp.MultipartParser(BOUNDARY.encode())
    parser.feed(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n")
    chunk = os.urandom(65536)
    for _ in range(200):  # 12.5 MB through the parser
        events = parser.feed(chunk)
        assert all(isinstance(e, mp.Data) for e in events)
        assert sum(len(e.chunk) for e in events if isinstance(e, mp.Data)) <= len(chunk) + 64
        assert len(parser._buf) < len(BOUNDARY) + 8
    tail = parser.feed(b"\r\n--" + BOUNDARY.encode() + b"--\r\n")
    assert isinstance(tail[-1], mp.End) and parser.done
    parser.close()


async def test_first_part_streams_chunks() -> None:
    payload = os.urandom(200_000)
    body = await compose_bytes([payload, b"second"])
    pieces = [c async for c in mp.iter_first_part(chunked(body, 8192), BOUNDARY.encode())]
    assert len(pieces) > 10 and b"".join(pieces) == payload
    with pytest.raises(mp.MultipartError):
        _ = [c async for c in mp.iter_first_part(chunked(b"--B--\r\n", 3), b"B")]


async def test_compose_yields_payloads_without_copying() -> None:
    payloads = [os.urandom(1000), os.urandom(10)]
    seen: list[bytes] = []
    chunks = [c async for c in mp.compose(payloads, "b", on_part=seen.append)]
    assert chunks[1] is payloads[0] and chunks[3] is payloads[1]
    assert seen == payloads
    assert b"".join(chunks).endswith(b"\r\n--b--\r\n")
    with pytest.raises(mp.MultipartError):
        _ = [c async for c in mp.compose([], "b")]


async def test_compose_from_async_iterable_and_replay() -> None:
    async def gen() -> AsyncIterator[bytes]:
        yield b"one"
        yield b"two"

    body = mp.ReplayableBody(lambda: mp.compose(gen(), "b"))
    first = b"".join([c async for c in body])
    second = b"".join([c async for c in body])
    assert first == second
    assert [p async for _, p in mp.iter_parts(chunked(first, 5), b"b")] == [b"one", b"two"]


def test_content_type_parameters() -> None:
    media, params = mp.parse_content_type(
        'Multipart/Related; type="application/dicom"; boundary="a;b\\"c"; transfer-syntax=*'
    )
    assert media == "multipart/related"
    assert params == {"type": "application/dicom", "boundary": 'a;b"c', "transfer-syntax": "*"}
    assert mp.boundary_of("multipart/related; boundary=xyz") == b"xyz"
    for bad in ("application/dicom", "multipart/related", "multipart/related; type=x"):
        with pytest.raises(mp.MultipartError):
            mp.boundary_of(bad)
    assert mp.new_boundary() != mp.new_boundary()
