"""One typed spec per job kind: the single definition of its input.

The GraphQL inputs, the CLI and the worker all go through `parse_spec`, so an input is
validated the same way wherever it comes from, and a stored job input is `spec.as_input()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.core.enums import JobKind
from gateway.core.errors import InvalidInput
from gateway.core.settings import Settings
from gateway.jobs.specs.anonymize import AnonymizeSpec
from gateway.jobs.specs.base import JobSpec
from gateway.jobs.specs.importing import ImportSpec
from gateway.jobs.specs.index import IndexSpec
from gateway.jobs.specs.rtstruct import RtStructSpec
from gateway.jobs.specs.sync import SyncSpec

SPECS: dict[JobKind, type[JobSpec]] = {
    JobKind.SYNC: SyncSpec,
    JobKind.ANONYMIZE: AnonymizeSpec,
    JobKind.RTSTRUCT: RtStructSpec,
    JobKind.INDEX: IndexSpec,
    JobKind.IMPORT: ImportSpec,
}


def parse_spec(kind: str, data: Mapping[str, Any], settings: Settings) -> JobSpec:
    """The validated spec of a `kind` job; `InvalidInput` naming the field otherwise."""
    spec = SPECS.get(JobKind(kind)) if kind in JobKind.__members__ else None
    if spec is None:
        raise InvalidInput(f"{kind} jobs are not available in this version")
    return spec.parse(data, settings)


__all__ = [
    "SPECS",
    "AnonymizeSpec",
    "ImportSpec",
    "IndexSpec",
    "JobSpec",
    "RtStructSpec",
    "SyncSpec",
    "parse_spec",
]
