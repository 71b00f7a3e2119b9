"""The roles policy: the one place that decides what a caller may do.

| | admin | radiologist | researcher |
|---|---|---|---|
| identity fields of clinical data | yes | yes | refused (FORBIDDEN) |
| syncStudies | yes | clinical to clinical | no |
| anonymizeStudy | yes | yes | no |
| processRtStruct | yes | yes | on research sources |
| import (`POST /import`) | yes | yes | into research archives |
| see a job | all | own | own, and anonymize jobs naming them recipient (pseudonyms, no input) |
| cancel, retry a job | all | own | own |
| reidentify, users, groups, others' tokens, audit log | yes | no | no |

Per-source limits (`sources` of a user or group) apply to everyone.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.auth.principal import Principal
from gateway.core.enums import JobKind, Role, SourceRole
from gateway.core.errors import Forbidden, shown
from gateway.core.settings import Settings

CLINICAL_ROLES = frozenset({Role.ADMIN, Role.RADIOLOGIST})


def sees_identity(caller: Principal) -> bool:
    """Whether the caller may see who a patient is (names, IDs, birth dates, ...)."""
    return not CLINICAL_ROLES.isdisjoint(caller.roles)


def readable_sources(caller: Principal, ids: Iterable[str]) -> list[str]:
    """The sources of `ids` the caller may read, in order."""
    return [i for i in ids if caller.may_read_source(i)]


def require_admin(caller: Principal, what: str) -> None:
    """Refuse `what` to anyone but an admin."""
    if not caller.is_admin:
        raise Forbidden(f"{what}: admins only")


def may_see_job(caller: Principal, owner: str | None) -> bool:
    """Admins see every job; others their own."""
    return caller.is_admin or (owner is not None and owner == caller.user_id)


def require_job(caller: Principal, owner: str | None, what: str) -> None:
    """Refuse acting on a job the caller may not see."""
    if not may_see_job(caller, owner):
        raise Forbidden(f"{what}: not your job")


def check_submit(
    caller: Principal,
    kind: JobKind,
    sources: Iterable[str],
    settings: Settings,
    *,
    clinical_destination: bool = False,
) -> None:
    """Refuse a job the caller's roles or source limits do not allow, before it is queued.

    `sources` are every source the job reads or writes.
    """
    names = list(sources)
    denied = [s for s in names if not caller.may_read_source(s)]
    if denied:
        raise Forbidden(f"{kind.lower()}: source {shown(denied[0])} is not among yours")
    research = {s for s in names if settings.source(s).has_role(SourceRole.RESEARCH)}
    if caller.is_admin:
        return
    if kind == JobKind.SYNC:
        if not caller.has(Role.RADIOLOGIST):
            raise Forbidden("syncStudies: radiologists and admins only")
        if research:
            raise Forbidden("syncStudies: research archives take part for admins only")
    elif kind == JobKind.ANONYMIZE:
        if not caller.has(Role.RADIOLOGIST):
            raise Forbidden("anonymizeStudy: radiologists and admins only")
        if clinical_destination:
            raise Forbidden("anonymizeStudy: a clinical destination is for admins only")
    elif kind == JobKind.RTSTRUCT:
        if not caller.has(Role.RADIOLOGIST) and set(names) - research:
            raise Forbidden("processRtStruct: researchers on research archives only")
    elif kind == JobKind.IMPORT:
        if not caller.has(Role.RADIOLOGIST) and set(names) - research:
            raise Forbidden("import: researchers into research archives only")
    else:
        raise Forbidden(f"{kind.lower()}: not allowed")
