"""Opaque bearer tokens: random, shown once, stored as a SHA-256 digest.

A token has 256 bits of randomness, so a fast digest is enough to store it (no
password-style stretching); the prefix says what it is and lets a user recognise it.
"""

from __future__ import annotations

import hashlib
import secrets

SESSION_PREFIX = "pgs_"
API_PREFIX = "pgt_"
SHOWN = 8  # characters of an API token kept in clear, to recognise it


def new_token(prefix: str) -> str:
    """A fresh token with `prefix`."""
    return prefix + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def shown_prefix(token: str) -> str:
    """The first characters of a token, safe to list."""
    return token[: len(API_PREFIX) + SHOWN]
