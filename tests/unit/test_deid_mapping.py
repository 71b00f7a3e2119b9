"""The encrypted pseudonym mapping and audited re-identification, on a SQLite database."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.core.errors import ConfigError, InvalidInput
from gateway.core.settings import Settings
from gateway.db.models import AuditEvent, DeidMapping
from gateway.deid import load_cipher, reidentify, save_mapping
from gateway.deid.mapping import MappingError
from gateway.runtime import Runtime

KEY = base64.b64encode(bytes(range(32))).decode()
IDENTITY = {"PatientID": "MRN-4711", "PatientName": "MÜLLER^JÖRG", "PatientBirthDate": "19471113"}


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        sources=(), database_url=f"sqlite+aiosqlite:///{tmp_path}/gw.db", mapping_key=KEY
    )
    rt = await Runtime.create(settings)
    try:
        yield rt
    finally:
        await rt.aclose()


def test_cipher_round_trip_and_tamper() -> None:
    cipher = load_cipher(KEY)
    sealed = cipher.encrypt(IDENTITY, "aad")
    assert "MRN-4711" not in sealed and "MÜLLER" not in base64.b64decode(sealed).decode("latin-1")
    assert cipher.decrypt(sealed, "aad") == IDENTITY
    with pytest.raises(MappingError):
        cipher.decrypt(sealed, "other row")
    other = load_cipher(base64.b64encode(bytes(32)).decode())
    with pytest.raises(MappingError):
        other.decrypt(sealed, "aad")


@pytest.mark.parametrize("bad", [None, "", "not base64!", base64.b64encode(b"short").decode()])
def test_bad_mapping_key(bad: str | None) -> None:
    with pytest.raises(ConfigError, match="GATEWAY_MAPPING_KEY"):
        load_cipher(bad)


async def test_store_and_reidentify_with_audit(runtime: Runtime) -> None:
    cipher = load_cipher(KEY)
    for _ in range(2):  # idempotent: one row per (project, pseudonym, study)
        await save_mapping(runtime.sessions, cipher, "proj", "ANONX", "2.25.1", IDENTITY)
    await save_mapping(runtime.sessions, cipher, "proj", "ANONX", "2.25.2", IDENTITY)
    async with runtime.sessions() as session:
        rows = (await session.scalars(select(DeidMapping))).all()
    assert len(rows) == 2
    stored = json.dumps([[r.project, r.lookup, r.study_ref, r.payload] for r in rows])
    assert "MRN-4711" not in stored and "ANONX" not in stored and "19471113" not in stored

    found = await reidentify(
        runtime.sessions, runtime.settings.mapping_key, "proj", "ANONX", actor="admin:alice"
    )
    assert [s["anonymizedStudyInstanceUid"] for s in found["studies"]] == ["2.25.1", "2.25.2"]
    assert found["studies"][0]["original"] == IDENTITY
    with pytest.raises(InvalidInput):
        await reidentify(
            runtime.sessions,
            runtime.settings.mapping_key,
            "other-project",
            "ANONX",
            actor="admin:alice",
        )

    async with runtime.sessions() as session:
        events = (await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all()
    assert [(e.actor, e.action) for e in events] == [("admin:alice", "reidentify")] * 2
    assert events[0].detail == {"project": "proj", "studies": 2, "found": True}
    text = json.dumps([[e.object_ref, e.detail] for e in events])
    assert "MRN-4711" not in text and "MÜLLER" not in text and "ANONX" not in text
