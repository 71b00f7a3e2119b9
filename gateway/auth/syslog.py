"""The audit trail, forwarded as RFC 5424 syslog messages over UDP (the transport DICOM
PS3.15 A.5 audit repositories accept).

One worker at a time (a Redis lock) reads the chain past the last forwarded event and
sends each event once, in chain order; the position is kept in Redis, so events written
by any gateway, worker or CLI are forwarded, and a restart resumes where it stopped. A
message carries the event's opaque fields only: never a patient value (the chain holds
none).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.core.timing import as_utc
from gateway.db.models import AuditEvent

log = logging.getLogger(__name__)

APP_NAME = "pacs-gateway"
SD_ID = "audit@32473"  # 32473: the example enterprise number (RFC 5612)
FACILITY_AUTHPRIV = 10  # "security/authorization messages", as DICOM A.5 audit messages use
NOTICE, WARNING = 5, 4
MAX_MESSAGE = 8192  # bytes; well under the UDP datagram limit
BATCH = 500


@dataclass(frozen=True, slots=True)
class Target:
    """Where the messages go: a UDP host and port."""

    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Target:
        """`udp://host:port` (port 514 when omitted); ValueError otherwise."""
        parsed = urlparse(url)
        if parsed.scheme != "udp" or not parsed.hostname:
            raise ValueError(f"not a udp://host:port address: {url!r}")
        return cls(parsed.hostname, parsed.port or 514)


def _sd_value(value: object) -> str:
    """A structured-data parameter value, escaped as RFC 5424 6.3.3 asks."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_token(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most `limit`, `-` when empty."""
    token = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return token or "-"


def message(
    event: AuditEvent,
    hostname: str,
    facility: int = FACILITY_AUTHPRIV,
    procid: str | None = None,
) -> bytes:
    """One event as an RFC 5424 message: MSGID = the action, structured data = the
    event's fields and chain hash, MSG = the event as JSON (UTF-8, with a BOM)."""
    severity = NOTICE if (event.outcome or "ok") == "ok" else WARNING
    at = as_utc(event.at).isoformat(timespec="microseconds").replace("+00:00", "Z")
    fields = {
        "id": event.id,
        "actor": event.actor,
        "outcome": event.outcome or "ok",
        "objectType": event.object_type,
        "objectRef": event.object_ref,
        "address": event.address,
        "hash": event.hash,
    }
    sd = " ".join(f'{k}="{_sd_value(v)}"' for k, v in fields.items() if v is not None)
    header = " ".join(
        [
            f"<{facility * 8 + severity}>1",
            at,
            _header_token(hostname, 255),
            APP_NAME,
            _header_token(procid or str(os.getpid()), 128),
            _header_token(event.action, 32),
        ]
    )
    body = json.dumps(
        {**fields, "at": at, "action": event.action, "details": event.detail},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    head = f"{header} [{SD_ID} {sd}] ".encode()
    data = head + b"\xef\xbb\xbf" + body.encode()
    if len(data) > MAX_MESSAGE:  # details too long for one datagram: the fields still go
        data = head + b"\xef\xbb\xbf" + json.dumps({"truncated": True, **fields}).encode()
    return data


class Forwarder:
    """Sends the chain's new events to a syslog receiver, once each and in order."""

    def __init__(
        self,
        sessions: async_sessionmaker,
        redis: Redis,
        position_key: str,
        lock_key: str,
        target: Target,
        facility: int = FACILITY_AUTHPRIV,
    ) -> None:
        self.sessions = sessions
        self.redis = redis
        self.position_key = position_key
        self.lock_key = lock_key  # held by the one worker forwarding now
        self.target = target
        self.facility = facility
        self.hostname = socket.gethostname()
        family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    async def start_position(self) -> int:
        """Where forwarding resumes; a first run starts at the chain's end (history is
        exported with `pacs-gateway audit export`, not replayed)."""
        stored = await self.redis.get(self.position_key)
        if stored is not None:
            return int(stored)
        async with self.sessions() as session:
            last = await session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()))
        position = int(last or 0)
        await self.redis.set(self.position_key, position, nx=True)
        return int(await self.redis.get(self.position_key) or position)

    async def forward(self, hold_s: float = 30.0) -> int:
        """Send the events past the stored position (one worker at a time); how many."""
        if not await self.redis.set(self.lock_key, "1", nx=True, px=int(hold_s * 1000)):
            return 0
        sent = 0
        try:
            position = await self.start_position()
            while True:
                async with self.sessions() as session:
                    rows = (
                        await session.scalars(
                            select(AuditEvent)
                            .where(AuditEvent.id > position)
                            .order_by(AuditEvent.id)
                            .limit(BATCH)
                        )
                    ).all()
                for row in rows:
                    self._send(message(row, self.hostname, self.facility))
                    position = row.id
                    sent += 1
                if rows:
                    await self.redis.set(self.position_key, position)
                if len(rows) < BATCH:
                    return sent
        finally:
            await self.redis.delete(self.lock_key)

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendto(data, (self.target.host, self.target.port))
        except OSError as exc:  # UDP: the receiver may be away; the chain keeps the event
            log.warning("audit event not sent to syslog: %s", type(exc).__name__)

    def close(self) -> None:
        """Release the socket."""
        self._sock.close()
