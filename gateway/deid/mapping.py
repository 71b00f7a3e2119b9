"""Encrypted pseudonym mapping: AES-256-GCM (cryptography's AESGCM), one row per study.

Key: `settings.mapping_key`, base64 of 32 random bytes (env GATEWAY_MAPPING_KEY).
A row stores `lookup` = HMAC-SHA256(mapping key, project, pseudonym), never the
pseudonym or any clear identifier, and `payload` = base64(nonce || ciphertext),
whose associated data binds it to its project, lookup and study reference, so
a payload copied into another row does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.core.errors import ConfigError, GatewayError
from gateway.db.models import DeidMapping

_NONCE = 12


class MappingError(GatewayError):
    """A mapping row cannot be decrypted (wrong key or tampered row)."""

    code = "MAPPING_ERROR"


@dataclass(frozen=True, slots=True)
class MappingCipher:
    """AES-GCM with the mapping key, plus the keyed lookup hash."""

    key: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        """A short fingerprint of the key (which key encrypted a row), not the key."""
        return hashlib.sha256(b"deid-mapping-key-id" + self.key).hexdigest()[:16]

    def lookup(self, project: str, pseudonym: str) -> str:
        """The keyed hash that finds a pseudonym's rows."""
        msg = f"lookup\x1f{project}\x1f{pseudonym}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()

    def encrypt(self, identity: dict[str, Any], aad: str) -> str:
        """base64(nonce || AES-GCM(identity as JSON)), bound to `aad`."""
        nonce = os.urandom(_NONCE)
        plain = json.dumps(identity, ensure_ascii=False, sort_keys=True).encode()
        sealed = AESGCM(self.key).encrypt(nonce, plain, aad.encode())
        return base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, payload: str, aad: str) -> dict[str, Any]:
        """The identity sealed by `encrypt`; `MappingError` for a wrong key or a changed row."""
        try:
            raw = base64.b64decode(payload, validate=True)
            plain = AESGCM(self.key).decrypt(raw[:_NONCE], raw[_NONCE:], aad.encode())
        except (InvalidTag, ValueError, binascii.Error):
            raise MappingError("mapping row cannot be decrypted with this key") from None
        data: dict[str, Any] = json.loads(plain)
        return data


def load_cipher(mapping_key: str | None) -> MappingCipher:
    """The cipher for `settings.mapping_key`; `ConfigError` when unset or not 32 bytes."""
    if not mapping_key:
        raise ConfigError("GATEWAY_MAPPING_KEY is not configured (base64 of 32 random bytes)")
    try:
        key = base64.b64decode(mapping_key, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("GATEWAY_MAPPING_KEY is not valid base64") from None
    if len(key) != 32:
        raise ConfigError("GATEWAY_MAPPING_KEY must decode to 32 bytes")
    return MappingCipher(key)


def _aad(project: str, lookup: str, study_ref: str) -> str:
    return f"{project}\x1f{lookup}\x1f{study_ref}"


async def save_mapping(
    sessions: async_sessionmaker,
    cipher: MappingCipher,
    project: str,
    pseudonym: str,
    study_ref: str,
    identity: dict[str, Any],
) -> None:
    """Store (or replace) the encrypted identity of one de-identified study; idempotent."""
    lookup = cipher.lookup(project, pseudonym)
    payload = cipher.encrypt(identity, _aad(project, lookup, study_ref))
    async with sessions() as session, session.begin():
        row = await session.scalar(
            select(DeidMapping).where(
                DeidMapping.project == project,
                DeidMapping.lookup == lookup,
                DeidMapping.study_ref == study_ref,
            )
        )
        if row is None:
            session.add(
                DeidMapping(
                    project=project,
                    lookup=lookup,
                    study_ref=study_ref,
                    key_id=cipher.key_id,
                    payload=payload,
                )
            )
        else:
            row.payload, row.key_id = payload, cipher.key_id


async def load_mappings(
    sessions: async_sessionmaker, cipher: MappingCipher, project: str, pseudonym: str
) -> list[tuple[str, dict[str, Any]]]:
    """(study reference, decrypted identity) of every study mapped for this pseudonym."""
    lookup = cipher.lookup(project, pseudonym)
    async with sessions() as session:
        rows = (
            await session.scalars(
                select(DeidMapping)
                .where(DeidMapping.project == project, DeidMapping.lookup == lookup)
                .order_by(DeidMapping.study_ref)
            )
        ).all()
    return [
        (r.study_ref, cipher.decrypt(r.payload, _aad(project, lookup, r.study_ref))) for r in rows
    ]
