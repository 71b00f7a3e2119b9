"""INDEX: build one archive's key index (a full listing, then kept fresh by its changes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.core.enums import JobKind, SourceRole
from gateway.core.settings import Settings
from gateway.jobs.specs.base import source_of


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """The archive whose index is built."""

    kind: ClassVar[JobKind] = JobKind.INDEX

    source: str

    @property
    def sources(self) -> tuple[str, ...]:
        """The archive listed."""
        return (self.source,)

    @classmethod
    def parse(cls, data: Mapping[str, Any], settings: Settings) -> IndexSpec:
        """Validate an INDEX input: a source with role `query`."""
        return cls(source=source_of(data, "source", settings, SourceRole.QUERY).id)

    def as_input(self) -> dict[str, Any]:
        """The stored input."""
        return {"source": self.source}
