"""HTTP defaults for a gateway in front of clinical data.

- Hosts: a request whose `Host` is not one of `[gateway] allowed_hosts` is refused (a
  DNS-rebinding page cannot read through the browser of someone on the gateway's network).
- WebSocket origin: a browser's `Origin` must name an allowed host with the scheme the
  socket came with (ws: http, wss: https).
- Bodies: POST bodies are read up to `max_body_bytes` (413 beyond), must be UTF-8 JSON
  objects (400 with a GraphQL error otherwise), and are handed on unchanged.
- Headers: nosniff, no framing, no referrer on every response; a Content-Security-Policy
  on HTML.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
# The dashboard and its bundled GraphiQL load everything from the gateway itself (no CDN;
# GraphiQL's fonts are data: URLs inside its stylesheet)
HTML_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; "
    b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _host_of(value: str) -> str:
    host = value.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    return status, json.dumps(body).encode()


class Hardened:
    """The ASGI middleware that applies the defaults above."""

    def __init__(self, app: App, allowed_hosts: Sequence[str], max_body_bytes: int) -> None:
        self.app = app
        self.hosts = {h.lower() for h in allowed_hosts}
        self.any_host = "*" in self.hosts
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check, then call the app with headers added to its responses."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _host_of(_header(scope, b"host") or "")
        if not self.any_host and host not in self.hosts:
            await self._refuse(scope, send, 400, "BAD_REQUEST", "host not allowed")
            return
        if scope["type"] == "websocket":
            origin = _header(scope, b"origin")
            if origin is not None and not self._origin_ok(origin, scope):
                await send({"type": "websocket.close", "code": 4403})
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and scope["path"].rstrip("/") == "/graphql":
            checked = await self._checked_body(receive)
            if isinstance(checked, tuple):
                status, body = checked
                await self._respond(send, status, body)
                return
            receive = checked
        await self.app(scope, receive, self._with_headers(send))

    def _origin_ok(self, origin: str, scope: Scope) -> bool:
        parts = urlsplit(origin)
        wanted = "https" if scope.get("scheme") == "wss" else "http"
        host = (parts.hostname or "").lower()
        return parts.scheme == wanted and (self.any_host or host in self.hosts)

    async def _checked_body(self, receive: Receive) -> Receive | tuple[int, bytes]:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _error(400, "BAD_REQUEST", "the request ended early")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return _error(413, "PAYLOAD_TOO_LARGE", f"bodies up to {self.max_body} bytes")
            chunks.append(chunk)
            more = bool(message.get("more_body"))
        body = b"".join(chunks)
        refused = _refusal(body)
        if refused is not None:
            return _error(400, "BAD_REQUEST", refused)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    def _with_headers(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in COMMON_HEADERS if k not in names]
                ctype = dict(headers).get(b"content-type", b"")
                if ctype.startswith(b"text/html") and b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", HTML_CSP))  # unless its own
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

    async def _refuse(self, scope: Scope, send: Send, status: int, code: str, text: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4400})
            return
        await self._respond(send, *_error(status, code, text))

    async def _respond(self, send: Send, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"application/json"), *COMMON_HEADERS]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _refusal(body: bytes) -> str | None:
    """Why a POST body is not a GraphQL request (None: it may be one; form posts and
    other content types are left to the GraphQL view, which refuses them)."""
    if not body.lstrip().startswith((b"{", b"[", b'"', b"n", b"t", b"f")) and body.strip():
        return None  # not JSON at all: the view answers for its content type
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    try:
        data = json.loads(text)
    except RecursionError:
        return "the body nests too deeply"
    except ValueError:
        return "the body is not valid JSON"
    if not isinstance(data, dict):
        return "the body must be a JSON object (batching is off)"
    return None
