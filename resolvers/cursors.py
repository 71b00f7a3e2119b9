"""Page cursors: opaque, sealed keyset positions.

A cursor names the last patient or study of a page; sealed with AES-GCM, it tells a caller
who may not see identity nothing. The request's runtime sets the key (`make_context`): the
same `GATEWAY_CURSOR_KEY` on every gateway behind one balancer keeps cursors valid across
them; without it each process seals with a key of its own.
"""

from __future__ import annotations

import base64
import os
from contextvars import ContextVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from graphql import GraphQLError

_PROCESS_KEY = os.urandom(32)  # used where no runtime set a key
CURSOR_KEY: ContextVar[bytes] = ContextVar("cursor_key", default=_PROCESS_KEY)


def encode_cursor(key: str, prefix: str = "k") -> str:
    """A sealed cursor for `key`; `prefix` says what it pages, so one list refuses another's."""
    nonce = os.urandom(12)
    sealed = AESGCM(CURSOR_KEY.get()).encrypt(nonce, key.encode(), prefix.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def decode_cursor(cursor: str, prefix: str = "k") -> str:
    """The key of a cursor made by `encode_cursor` with the same prefix; BAD_USER_INPUT else."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4))
        return AESGCM(CURSOR_KEY.get()).decrypt(raw[:12], raw[12:], prefix.encode()).decode()
    except (ValueError, UnicodeError, InvalidTag):
        raise GraphQLError("invalid cursor", extensions={"code": "BAD_USER_INPUT"}) from None
