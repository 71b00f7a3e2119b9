"""Deterministic UIDs: `2.25.<128-bit int from sha256(seed, path)>` (PS3.5 B.2)."""

from __future__ import annotations

import hashlib


def derive_uid(seed: int, *parts: object) -> str:
    """The UID for `parts` under `seed`; the same inputs always give the same UID."""
    text = "\x1f".join(str(p) for p in (seed, *parts))
    digest = hashlib.sha256(b"pacs-gateway-seed\x1e" + text.encode("utf-8")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"
