"""The Prometheus text format, and the small HTTP endpoint each worker serves it on.

The gateway serves `/metrics` as a route of its app; a worker has no HTTP server, so
it opens one of its own on `[metrics] worker_host:worker_port`, allow-listed like the
gateway's. Both refuse clients outside `[metrics] allow` with 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from gateway.core.settings import MetricsConfig
from gateway.metrics import record

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 5.0
MAX_HEADER_LINES = 100


def render() -> tuple[bytes, str]:
    """This process's metrics in the text format, and its content type."""
    record.refresh()
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class WorkerEndpoint:
    """`GET /metrics` over HTTP/1.1 (one request per connection) for a process without an
    ASGI app: the workers."""

    def __init__(self, config: MetricsConfig, port: int | None = None) -> None:
        self.config = config
        self.host = config.worker_host
        self.port = config.worker_port if port is None else port
        self._server: asyncio.Server | None = None

    async def start(self) -> bool:
        """Listen; False (logged, not raised) when the port cannot be had: a worker runs
        its jobs without metrics rather than not at all."""
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            log.warning(
                "worker metrics not served on %s:%d: %s", self.host, self.port, exc.strerror
            )
            return False
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("worker metrics on http://%s:%d/metrics", self.host, self.port)
        return True

    async def aclose(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                status, body, kind = await self._answer(reader, writer)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + body)
            await writer.drain()
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass  # a client that went away or spoke nonsense gets nothing
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, bytes, str]:
        request_line = (await reader.readline()).decode("latin-1").split()
        for _ in range(MAX_HEADER_LINES):
            if (await reader.readline()) in (b"\r\n", b"\n", b""):
                break
        peer = writer.get_extra_info("peername")
        text = "text/plain; charset=utf-8"
        if not self.config.allows(peer[0] if peer else None):
            return "403 Forbidden", b"forbidden\n", text
        if len(request_line) < 2 or request_line[1].split("?")[0] != "/metrics":
            return "404 Not Found", b"not found\n", text
        if request_line[0] != "GET":
            return "405 Method Not Allowed", b"GET only\n", text
        body, kind = render()
        return "200 OK", body, kind
