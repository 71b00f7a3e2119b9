"""RTSTRUCT: masks, volumes, surfaces and exports of one structure set."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.core.enums import JobKind
from gateway.core.errors import InvalidInput
from gateway.core.settings import Settings
from gateway.core.uids import is_uid
from gateway.jobs.specs.base import drop_none, flag, optional_text, source_of


@dataclass(frozen=True, slots=True)
class RtStructSpec:
    """The RTSTRUCT series of a study (the named one, or each one found) on `source`."""

    kind: ClassVar[JobKind] = JobKind.RTSTRUCT

    source: str
    study_uid: str
    series_uid: str | None = None
    full_grid_masks: bool = False

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources this job reads or writes."""
        return (self.source,)

    @classmethod
    def parse(cls, data: Mapping[str, Any], settings: Settings) -> RtStructSpec:
        """Validate an RTSTRUCT input."""
        try:
            source = source_of(data, "source", settings)
        except InvalidInput:
            raise InvalidInput("source: unknown source id") from None
        study = data.get("studyInstanceUid")
        if not isinstance(study, str) or not study.strip():
            raise InvalidInput("studyInstanceUid: required")
        if not is_uid(study.strip()):
            raise InvalidInput("studyInstanceUid: a DICOM UID is required")
        series = optional_text(data, "seriesInstanceUid", "a UID when given")
        if series is not None and not is_uid(series.strip()):
            raise InvalidInput("seriesInstanceUid: must be a UID when given")
        return cls(
            source=source.id,
            study_uid=study.strip(),
            series_uid=series.strip() if series is not None else None,
            full_grid_masks=flag(data, "fullGridMasks", False),
        )

    def as_input(self) -> dict[str, Any]:
        """The stored input."""
        return drop_none(
            {
                "source": self.source,
                "studyInstanceUid": self.study_uid,
                "seriesInstanceUid": self.series_uid,
                "fullGridMasks": self.full_grid_masks,
            }
        )
