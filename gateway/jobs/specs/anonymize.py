"""ANONYMIZE: de-identify one study (DICOM PS3.15 Annex E) into a research archive."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.core.enums import JobKind, SourceKind, SourceRole
from gateway.core.errors import InvalidInput
from gateway.core.settings import Settings
from gateway.core.uids import is_uid
from gateway.jobs.specs.base import flag, optional_text, source_of
from workers.dicom.deid.options import OptionError, parse_options

DEFAULT_PROJECT = "default"
MAX_OPTIONS = 32
MAX_RECIPIENTS = 16


@dataclass(frozen=True, slots=True)
class AnonymizeSpec:
    """Study `study_uid` of `source`, de-identified with `options`, stored in `destination`."""

    kind: ClassVar[JobKind] = JobKind.ANONYMIZE

    source: str
    destination: str
    study_uid: str
    project: str | None = None
    options: frozenset[str] = frozenset()
    keep_mapping: bool = False
    allow_clinical_destination: bool = False  # admins only (gateway.auth.policy)
    recipients: tuple[str, ...] = ()  # usernames who may see the job's pseudonyms

    @property
    def project_or_default(self) -> str:
        """The research project, `default` when none was given."""
        return self.project or DEFAULT_PROJECT

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources this job reads or writes."""
        return (self.source, self.destination)

    @classmethod
    def parse(cls, data: Mapping[str, Any], settings: Settings) -> AnonymizeSpec:
        """Validate an ANONYMIZE input."""
        source = source_of(data, "source", settings, SourceRole.RETRIEVE)
        clinical = flag(data, "allowClinicalDestination", False)
        roles = (SourceRole.RESEARCH, SourceRole.STORE) if clinical else (SourceRole.RESEARCH,)
        dest = source_of(data, "destination", settings, *roles)
        if dest.id == source.id:
            raise InvalidInput("destination: must differ from the source")
        uid = data.get("studyInstanceUid")
        if not is_uid(uid):
            raise InvalidInput("studyInstanceUid: a DICOM UID is required")
        options = data.get("options") or []
        if (
            not isinstance(options, list | tuple)
            or len(options) > MAX_OPTIONS
            or not all(isinstance(o, str) and len(o) <= 64 for o in options)
        ):
            raise InvalidInput("options: a list of option names is required")
        try:
            chosen = parse_options(options)
        except OptionError as exc:
            raise InvalidInput(str(exc)) from None
        project = optional_text(data, "project", "a non-empty string")
        if project is not None and len(project) > 64:
            raise InvalidInput("project: at most 64 characters")
        if dest.kind == SourceKind.XNAT and not project:
            raise InvalidInput("project: an XNAT destination needs a project")
        recipients = data.get("recipients") or []
        if (
            not isinstance(recipients, list | tuple)
            or len(recipients) > MAX_RECIPIENTS
            or not all(isinstance(r, str) and 0 < len(r) <= 64 for r in recipients)
        ):
            raise InvalidInput(f"recipients: at most {MAX_RECIPIENTS} usernames")
        return cls(
            source=source.id,
            destination=dest.id,
            study_uid=str(uid),
            project=project,
            options=chosen,
            keep_mapping=flag(data, "keepMapping", False),
            allow_clinical_destination=clinical,
            recipients=tuple(dict.fromkeys(r.strip().lower() for r in recipients)),
        )

    def as_input(self) -> dict[str, Any]:
        """The stored input (options in a stable order)."""
        data: dict[str, Any] = {
            "source": self.source,
            "studyInstanceUid": self.study_uid,
            "destination": self.destination,
            "options": sorted(self.options),
            "keepMapping": self.keep_mapping,
        }
        if self.project is not None:
            data["project"] = self.project
        if self.allow_clinical_destination:
            data["allowClinicalDestination"] = True
        if self.recipients:
            data["recipients"] = list(self.recipients)
        return data
