"""Who is asking: the authenticated caller every layer above sees."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.enums import Role


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller's effective rights: own roles and sources united with their groups'.

    `sources` None means every source. `via` says how the caller came in (session, token,
    oidc, open); `token_id` names the API token or session for the audit trail.
    """

    user_id: str
    username: str
    roles: frozenset[Role]
    sources: frozenset[str] | None = None
    via: str = "session"
    token_id: str | None = None

    @property
    def actor(self) -> str:
        """How the audit trail names this caller (an id, never a person's name)."""
        return f"user:{self.user_id}"

    def has(self, role: Role) -> bool:
        """True when the caller holds `role`."""
        return role in self.roles

    @property
    def is_admin(self) -> bool:
        """True for an administrator."""
        return Role.ADMIN in self.roles

    def may_read_source(self, source_id: str) -> bool:
        """True when no source limit excludes `source_id`."""
        return self.sources is None or source_id in self.sources


# The caller in `[auth] mode = "open"` (loopback development): an administrator.
OPEN_CALLER = Principal(user_id="open", username="open", roles=frozenset({Role.ADMIN}), via="open")
