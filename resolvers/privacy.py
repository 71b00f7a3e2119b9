"""The one choke point for patient identity in the API.

Every field that exposes who a patient is (ID, issuer, name, birth date, sex, and the
conflicts that quote them) returns its value through `identity()`. The policy
(`gateway.auth.policy.sees_identity`) decides; a refused field is an error with
`extensions.code = "FORBIDDEN"` and no value (the rest of the response still arrives),
never a silent blank. Each value served is noted for the operation's audit event
(opaque references only); when the audit trail cannot keep up, identity is refused with
AUDIT_UNAVAILABLE rather than served unaudited.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from gateway.auth.policy import sees_identity
from gateway.auth.principal import Principal
from gateway.core.errors import AuditUnavailable, Forbidden, InvalidInput
from resolvers.context import Info

T = TypeVar("T")
MAX_KEY_CHARS = 5 * 64  # a Person Name (PN) has up to five 64-character groups; IDs are 64
C = TypeVar("C")


def may_see(caller: Principal | None, field: str) -> bool:
    """Whether `caller` may see identity attribute `field`."""
    del field  # every identity field follows the same rule today
    return caller is not None and sees_identity(caller)


def identity(info: Info, field: str, value: T, ref: str | None = None) -> T:
    """`value` of identity attribute `field` if the caller may see it; FORBIDDEN otherwise.

    `ref` is what the value belongs to (e.g. the patient's merge key); it is recorded
    only as an opaque digest.
    """
    ctx = info.context
    if not may_see(ctx.caller, field):
        raise Forbidden(f"{field}: identity is not shown to your role")
    if ctx.runtime.audit.saturated:
        if hasattr(ctx.response, "status_code"):  # HTTP: 503, the service is what is short
            ctx.response.status_code = 503
        raise AuditUnavailable("the audit trail is not keeping up; identity is not served")
    if value is not None and value != "" and not (isinstance(value, list | tuple) and not value):
        ctx.identity_reads.add(opaque(ref if ref is not None else f"{field}:{value}"))
    return value


def search_by_identity(info: Info, *values: object) -> None:
    """Refuse a search keyed on identity (patient ID, name, birth date, accession number) to
    a caller who may not see identity: its answer would say whether such a patient exists."""
    if any(isinstance(v, str) and len(v) > MAX_KEY_CHARS for v in values):
        raise InvalidInput(f"patient keys hold at most {MAX_KEY_CHARS} characters")
    if any(v is not None for v in values) and not may_see(info.context.caller, "search"):
        raise Forbidden("searching by patient identity is not allowed for your role")


IDENTITY_CONFLICTS = frozenset(
    {"patientId", "patientName", "name", "birthDate", "sex", "issuerOfPatientId"}
)


def identity_conflicts(info: Info, items: Sequence[C], ref: str | None = None) -> Sequence[C]:
    """Conflicts, through the choke point when any of them quotes an identity attribute."""
    if any(getattr(c, "field", None) in IDENTITY_CONFLICTS for c in items):
        return identity(info, "conflicts", items, ref)
    return items


def opaque(ref: str) -> str:
    """An opaque reference for the audit trail (a digest, never the value itself)."""
    return hashlib.sha256(b"pacs-gateway/audit\x00" + ref.encode()).hexdigest()[:24]


def identity_fields() -> frozenset[str]:
    """Names passed to `identity()` (for tests that walk the schema)."""
    return frozenset(
        {"patientId", "patientName", "issuerOfPatientId", "name", "birthDate", "sex", "conflicts"}
    )
