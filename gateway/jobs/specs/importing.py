"""IMPORT: store the DICOM files of an upload (files, folders, ZIPs) into one archive."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.core.enums import JobKind, SourceKind, SourceRole
from gateway.core.errors import InvalidInput
from gateway.core.settings import Settings
from gateway.jobs.specs.base import source_of
from gateway.jobs.spool import is_spool_id


@dataclass(frozen=True, slots=True)
class ImportSpec:
    """The upload in spool `spool` (`gateway.jobs.spool`), stored into `destination`."""

    kind: ClassVar[JobKind] = JobKind.IMPORT

    spool: str
    destination: str

    @property
    def sources(self) -> tuple[str, ...]:
        """The archive written."""
        return (self.destination,)

    @classmethod
    def parse(cls, data: Mapping[str, Any], settings: Settings) -> ImportSpec:
        """Validate an IMPORT input: a spool id and an archive with role store or research."""
        dest = source_of(data, "to", settings, SourceRole.STORE, SourceRole.RESEARCH)
        if dest.kind == SourceKind.XNAT:
            raise InvalidInput("to: XNAT archives take imports through their own project flow")
        spool = data.get("spool")
        if not is_spool_id(spool):
            raise InvalidInput("spool: not an upload id")
        return cls(spool=str(spool), destination=dest.id)

    def as_input(self) -> dict[str, Any]:
        """The stored input."""
        return {"spool": self.spool, "to": self.destination}
