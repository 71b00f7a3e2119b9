"""Re-identification: an admin-only operation, audited on every use.

Not reachable through the normal API; a caller (an admin CLI command or an
admin-only mutation) passes the acting user. The audit event names the actor,
the project and an opaque reference (a keyed hash of the pseudonym), never the
clear identity.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.auth import audit
from gateway.auth.audit import Entry
from gateway.core.errors import InvalidInput
from gateway.deid.mapping import load_cipher, load_mappings


async def reidentify(
    sessions: async_sessionmaker,
    mapping_key: str | None,
    project: str,
    pseudonym: str,
    actor: str,
    reason: str | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """The original identities behind `pseudonym` in `project`, one per de-identified study.

    Writes an `AuditEvent` (action "reidentify") whether or not a mapping is found;
    `InvalidInput` when none is. `ConfigError` when no mapping key is configured.
    """
    cipher = load_cipher(mapping_key)
    found = await load_mappings(sessions, cipher, project, pseudonym)
    ref = "deid:" + cipher.lookup(project, pseudonym)[:32]
    async with sessions() as session, session.begin():
        details: dict[str, Any] = {"project": project, "studies": len(found), "found": bool(found)}
        if reason:
            details["reason"] = reason[:500]
        await audit.append(
            session,
            Entry(
                actor=actor,
                action="reidentify",
                outcome="ok" if found else "error",
                object_type="pseudonym",
                object_ref=ref,
                address=address,
                details=details,
            ),
        )
    if not found:
        raise InvalidInput("pseudonym: no mapping kept for it in this project")
    return {
        "project": project,
        "pseudonym": pseudonym,
        "studies": [
            {"anonymizedStudyInstanceUid": study, "original": ident} for study, ident in found
        ],
    }
