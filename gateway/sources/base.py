"""The one protocol every PACS adapter implements, and the records it returns.

Records are small frozen dataclasses, normalised identically whatever the
archive: UIDs as plain strings, dates "YYYYMMDD", times "HHMMSS[.ffffff]",
person names "FAMILY^GIVEN" (the alphabetic group only), empty values as None,
modalities sorted. Counts are None when the archive does not report them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.core.settings import SourceConfig
from gateway.sources.resilience import CallStats


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """A patient as one source holds it."""

    patient_id: str
    issuer: str | None = None
    name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    studies: int | None = None


@dataclass(frozen=True, slots=True)
class StudyRecord:
    """A study as one source holds it."""

    study_uid: str
    patient_id: str | None = None
    patient_name: str | None = None
    issuer: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    description: str | None = None
    accession_number: str | None = None
    modalities: tuple[str, ...] = ()
    series_count: int | None = None
    instance_count: int | None = None


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """A series as one source holds it."""

    series_uid: str
    study_uid: str
    modality: str | None = None
    series_number: int | None = None
    description: str | None = None
    instance_count: int | None = None


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """An instance as one source holds it."""

    sop_instance_uid: str
    series_uid: str
    study_uid: str
    sop_class_uid: str | None = None
    instance_number: int | None = None


@dataclass(frozen=True, slots=True)
class PatientQuery:
    """Patient-level matching keys (DICOM semantics: `*`/`?`, PN case-insensitive)."""

    patient_id: str | None = None
    name: str | None = None
    birth_date: str | None = None  # "YYYYMMDD" or "YYYYMMDD-YYYYMMDD" (open ends allowed)
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class StudyQuery:
    """Study-level matching keys; `study_uids` is a UID list match."""

    patient_id: str | None = None
    patient_name: str | None = None
    study_uids: tuple[str, ...] = ()
    accession_number: str | None = None
    study_date: str | None = None
    modality: str | None = None
    description: str | None = None
    limit: int | None = None
    offset: int = 0
    # (study UID, patient ID) pairs the caller already knows of this archive (the key
    # index): a hint an adapter may use to find those studies faster, never a filter
    known_patients: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """Series of one or more studies."""

    study_uids: tuple[str, ...]
    series_uids: tuple[str, ...] = ()
    modality: str | None = None


@dataclass(frozen=True, slots=True)
class InstanceQuery:
    """Instances of one study, optionally of some series only."""

    study_uid: str
    series_uids: tuple[str, ...] = ()
    sop_instance_uids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What a store call did: instances accepted and refused (by SOP Instance UID)."""

    stored: tuple[str, ...]
    failed: tuple[str, ...] = ()
    bytes: int = 0


@runtime_checkable
class PacsSource(Protocol):
    """One PACS. Every method raises only `gateway.core.errors.SourceError` subclasses."""

    config: SourceConfig

    @property
    def id(self) -> str:
        """The configured id."""
        ...

    @property
    def stats(self) -> CallStats:
        """Timing and count of this source's upstream calls (for the API and metrics)."""
        ...

    async def ping(self) -> float:
        """Check the PACS answers; return the round-trip latency in milliseconds."""
        ...

    async def find_patients(self, query: PatientQuery) -> list[PatientRecord]:
        """Patients matching `query`, ordered by patient id."""
        ...

    async def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        """Studies matching `query`, ordered by study UID."""
        ...

    async def find_series(self, query: SeriesQuery) -> list[SeriesRecord]:
        """Series of the given studies."""
        ...

    async def find_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        """Instances of one study."""
        ...

    def retrieve_instance(
        self, study_uid: str, series_uid: str, sop_uid: str
    ) -> AsyncIterator[bytes]:
        """Stream one instance as a DICOM Part 10 file, chunk by chunk."""
        ...

    def retrieve_study(
        self, study_uid: str, series_uids: Sequence[str] = ()
    ) -> AsyncIterator[bytes]:
        """Yield each instance of a study (or of some series) as one Part 10 file.

        Only one instance is held in memory at a time.
        """
        ...

    async def store(self, files: Sequence[bytes]) -> StoreResult:
        """Store Part 10 files; instances already held are accepted again."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class ChangeFeed(Protocol):
    """An optional capability: the archive's own feed of what changed (Orthanc's /changes)."""

    async def study_changes(self, cursor: str | None) -> tuple[list[str], str]:
        """Study UIDs changed after `cursor` (None: from now on), and the next cursor.

        With `cursor` None it returns no studies, only the feed's current end.
        """
        ...


@runtime_checkable
class ReceiptWindow(Protocol):
    """An optional capability: studies by the archive's own receive time (dcm4chee's
    StudyReceiveDateTime), which finds a study stored today with an old study date."""

    async def studies_received(self, day: str) -> list[StudyRecord] | None:
        """Studies the archive received from `day` (YYYYMMDD, 00:00 by its clock) on; None
        when this archive does not match receive times."""
        ...

    async def matches_receipts(self) -> bool:
        """Whether this archive matches receive times (asked of it once)."""
        ...


@runtime_checkable
class MultipartRelay(Protocol):
    """An optional capability: the archive's own WADO-RS answer for a study or one series,
    to pass on as it arrives (no parse, no compose)."""

    async def relay_study(
        self, study_uid: str, series_uid: str | None
    ) -> tuple[str, AsyncIterator[bytes]]:
        """The archive's Content-Type (multipart/related, application/dicom parts) and its
        body's chunks; opened (status checked) before it returns."""
        ...


@runtime_checkable
class StudyCensus(Protocol):
    """An optional capability: how an archive whose feed names no deletion (Orthanc's
    /changes) tells the key index which of its studies are gone."""

    async def study_count(self) -> int:
        """How many studies the archive holds (one small request)."""
        ...

    async def absent_studies(self, known: Sequence[tuple[str, str]]) -> list[str]:
        """Of `known` (study UID, patient ID) pairs, the UIDs of the studies the archive does
        not hold; a study it cannot tell about (a UID it cannot be asked for) is not one."""
        ...
