"""GraphQL types of the public contract: sources, their health and how they answered."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum

import strawberry

from gateway.core.enums import SourceKind, SourceRole
from gateway.core.settings import SourceConfig
from resolvers.context import Info

# The core enums themselves, marked for GraphQL (strawberry.enum marks the class it is
# given); GraphQL names are the member names: ORTHANC, DICOMWEB, ..., QUERY, RETRIEVE, ...
strawberry.enum(SourceKind)
strawberry.enum(SourceRole)


@strawberry.enum
class SourceStatus(Enum):
    """How one source answered one federated query."""

    OK = "OK"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    SKIPPED = "SKIPPED"


@strawberry.type
class SourceHealth:
    """A live check of one source, bounded by its timeout."""

    up: bool
    latency_ms: float | None
    checked_at: datetime
    error: str | None = strawberry.field(description="Never contains patient data.")


@strawberry.type
class Source:
    """One configured PACS."""

    config: strawberry.Private[SourceConfig]

    @strawberry.field
    def id(self) -> strawberry.ID:
        """The configured id, e.g. "orthanc"."""
        return strawberry.ID(self.config.id)

    @strawberry.field
    def name(self) -> str:
        """Display name."""
        return self.config.name

    @strawberry.field
    def kind(self) -> SourceKind:
        """Adapter family."""
        return self.config.kind

    @strawberry.field
    def roles(self) -> list[SourceRole]:
        """Configured roles."""
        return list(self.config.roles)

    @strawberry.field
    async def health(self, info: Info) -> SourceHealth:
        """Live check, bounded by the source's timeout."""
        check = await info.context.health.load(self.config.id)
        return SourceHealth(
            up=check.up,
            latency_ms=check.latency_ms,
            checked_at=datetime.now(UTC),
            error=check.error,
        )
