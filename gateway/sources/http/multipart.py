"""Streaming multipart/related (RFC 2046, RFC 2387) for WADO-RS and STOW-RS.

Parsing is incremental: the parser is fed chunks as they arrive and emits part
headers, body pieces and part ends, holding at most one chunk plus a boundary's
length. Composing yields each part's headers and payload as separate chunks, so
no body is ever concatenated in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass

MAX_HEADER_BYTES = 16 * 1024


class MultipartError(ValueError):
    """The multipart body is malformed or truncated."""


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """A Content-Type as (lower-cased media type, parameters with unquoted values)."""
    media, _, rest = value.partition(";")
    params: dict[str, str] = {}
    while rest:
        item, rest = _next_param(rest)
        key, sep, val = item.partition("=")
        if sep:
            params[key.strip().lower()] = val.strip()
    return media.strip().lower(), params


def _next_param(text: str) -> tuple[str, str]:
    out: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            quoted = not quoted
        elif c == "\\" and quoted and i + 1 < len(text):
            i += 1
            out.append(text[i])
        elif c == ";" and not quoted:
            return "".join(out), text[i + 1 :]
        else:
            out.append(c)
        i += 1
    return "".join(out), ""


def boundary_of(content_type: str) -> bytes:
    """The boundary of a multipart Content-Type; MultipartError when absent."""
    media, params = parse_content_type(content_type)
    boundary = params.get("boundary")
    if not media.startswith("multipart/") or not boundary:
        raise MultipartError("not a multipart body with a boundary")
    return boundary.encode("latin-1")


@dataclass(frozen=True, slots=True)
class Headers:
    """Event: a part begins, with these headers (names lower-cased)."""

    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Data:
    """Event: a piece of the current part's body."""

    chunk: bytes


@dataclass(frozen=True, slots=True)
class End:
    """Event: the current part is complete."""


Event = Headers | Data | End
_END = End()


class MultipartParser:
    """Push parser: `feed` chunks, get events; `close` checks the body was complete."""

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"\r\n--" + boundary
        self._buf = bytearray(b"\r\n")  # so the first delimiter needs no special case
        self._state = "preamble"

    @property
    def done(self) -> bool:
        """True once the closing delimiter was seen."""
        return self._state == "done"

    def feed(self, data: bytes) -> list[Event]:
        """Consume `data`; return the events it completes."""
        if self._state == "done":
            return []
        self._buf += data
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> None:
        """Raise MultipartError if the closing delimiter never came."""
        if self._state != "done":
            raise MultipartError("multipart body ended before its closing boundary")

    def _step(self, events: list[Event]) -> bool:
        buf, delim = self._buf, self._delimiter
        if self._state in ("preamble", "body"):
            at = buf.find(delim)
            if at < 0:
                keep = len(delim) - 1
                if len(buf) > keep:
                    if self._state == "body":
                        events.append(Data(bytes(buf[: len(buf) - keep])))
                    del buf[: len(buf) - keep]
                return False
            if self._state == "body":
                if at:
                    events.append(Data(bytes(buf[:at])))
                events.append(_END)
            del buf[: at + len(delim)]
            self._state = "delimiter"
            return True
        if self._state == "delimiter":
            if len(buf) < 2:
                return False
            if buf.startswith(b"--"):
                self._state = "done"
                buf.clear()
                return False
            eol = buf.find(b"\r\n")
            if eol < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise MultipartError("garbage after a boundary")
                return False
            if buf[:eol].strip(b" \t"):
                raise MultipartError("garbage after a boundary")
            del buf[: eol + 2]
            self._state = "headers"
            return True
        # headers
        if buf.startswith(b"\r\n"):
            end, skip = 0, 2
        else:
            end, skip = buf.find(b"\r\n\r\n"), 4
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise MultipartError("part headers too long")
                return False
        events.append(Headers(_parse_headers(bytes(buf[:end]))))
        del buf[: end + skip]
        self._state = "body"
        return True


def _parse_headers(block: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n") if block else ():
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError("malformed part header")
        fields[name.strip().lower()] = value.strip()
    return fields


async def iter_events(chunks: AsyncIterable[bytes], boundary: bytes) -> AsyncIterator[Event]:
    """Parse a multipart body arriving as `chunks`, event by event."""
    parser = MultipartParser(boundary)
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
        if parser.done:
            break
    parser.close()


async def iter_parts(
    chunks: AsyncIterable[bytes], boundary: bytes
) -> AsyncIterator[tuple[dict[str, str], bytes]]:
    """Each part as (headers, body); only the current part is held in memory."""
    headers: dict[str, str] = {}
    body: list[bytes] = []
    async for event in iter_events(chunks, boundary):
        if isinstance(event, Headers):
            headers, body = event.fields, []
        elif isinstance(event, Data):
            body.append(event.chunk)
        else:
            data = b"".join(body)
            body = []
            yield headers, data


async def iter_first_part(chunks: AsyncIterable[bytes], boundary: bytes) -> AsyncIterator[bytes]:
    """The body of the first part, chunk by chunk; MultipartError when there is none."""
    seen = False
    async for event in iter_events(chunks, boundary):
        if isinstance(event, Data):
            seen = True
            yield event.chunk
        elif isinstance(event, End):
            seen = True
            break
    if not seen:
        raise MultipartError("multipart body has no part")


def new_boundary() -> str:
    """A fresh boundary that cannot occur in DICOM payloads by accident."""
    return f"pacs-gateway-{uuid.uuid4().hex}"


async def compose(
    parts: AsyncIterable[bytes] | Iterable[bytes],
    boundary: str,
    content_type: str = "application/dicom",
    on_part: Callable[[bytes], None] | None = None,
) -> AsyncIterator[bytes]:
    """A multipart/related body streamed part by part; `on_part` sees each payload."""
    opening = f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("latin-1")
    separator = b"\r\n" + opening
    first = True
    async for payload in _aiter(parts):
        if on_part is not None:
            on_part(payload)
        yield opening if first else separator
        first = False
        yield payload
    if first:
        raise MultipartError("no part to send")
    yield f"\r\n--{boundary}--\r\n".encode("latin-1")


async def _aiter(items: AsyncIterable[bytes] | Iterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class ReplayableBody:
    """An async-iterable request body that can be sent again (e.g. after a 401 renewal).

    httpx refuses to resend a body given as an async generator; this object
    makes a fresh generator each time it is iterated.
    """

    def __init__(self, factory: Callable[[], AsyncIterator[bytes]]) -> None:
        self._factory = factory

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._factory()
