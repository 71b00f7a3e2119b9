"""Value kinds shared by every layer: one StrEnum each, exposed to GraphQL by `resolvers`."""

from __future__ import annotations

from enum import StrEnum


class JobKind(StrEnum):
    """What a job does; each kind has its spec in `gateway.jobs.specs`."""

    SYNC = "SYNC"
    ANONYMIZE = "ANONYMIZE"
    RTSTRUCT = "RTSTRUCT"
    IMPORT = "IMPORT"
    INDEX = "INDEX"


class JobStatus(StrEnum):
    """Where a job is in its life; the DB row holds it."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """True once the job will not change again (unless retried)."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class ConflictStrategy(StrEnum):
    """What a sync does with instances both archives hold but that disagree."""

    REPORT_ONLY = "REPORT_ONLY"
    SKIP = "SKIP"
    SOURCE_WINS = "SOURCE_WINS"


class SourceRole(StrEnum):
    """What the gateway may use a source for."""

    QUERY = "query"
    RETRIEVE = "retrieve"
    STORE = "store"
    RESEARCH = "research"


class SourceKind(StrEnum):
    """The adapter family of a source: the ONE place a kind is registered.

    Each member carries its config value, its adapter (an import path, so this
    bottom layer imports nothing above it; `gateway.sources.registry` imports it)
    and the config keys the kind requires.
    """

    adapter: str
    required: tuple[str, ...]

    # The defaults only let mypy accept `SourceKind("orthanc")`, a lookup by value that
    # never reaches this `__new__`: it builds the members below, each with its data.
    def __new__(cls, value: str, adapter: str = "", required: tuple[str, ...] = ()) -> SourceKind:
        if not adapter:
            raise TypeError(f"SourceKind {value!r} needs its adapter")
        member = str.__new__(cls, value)
        member._value_ = value
        member.adapter = adapter
        member.required = required
        return member

    ORTHANC = "orthanc", "gateway.sources.orthanc.source:OrthancSource", ("url",)
    DICOMWEB = "dicomweb", "gateway.sources.dicomweb.source:DicomWebSource", ("url",)
    DIMSE = "dimse", "gateway.sources.dimse.source:DimseSource", ("host", "port", "called_aet")
    XNAT = "xnat", "gateway.sources.xnat.source:XnatSource", ("url",)


class Dialect(StrEnum):
    """Which DICOMweb server a `dicomweb` source talks to (its quirks differ)."""

    DCM4CHEE = "dcm4chee"
    ORTHANC = "orthanc"
    GENERIC = "generic"


class SourceAuth(StrEnum):
    """How the gateway authenticates to an HTTP source."""

    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"


class AuthMode(StrEnum):
    """`[auth] mode`: `required` (every request carries a token) or `open` (loopback only)."""

    REQUIRED = "required"
    OPEN = "open"


class LogFormat(StrEnum):
    """`[logging] format`: readable `text` lines (default) or `json` lines."""

    TEXT = "text"
    JSON = "json"


class Role(StrEnum):
    """What a user may do (their own roles plus their groups')."""

    ADMIN = "ADMIN"
    RADIOLOGIST = "RADIOLOGIST"
    RESEARCHER = "RESEARCHER"


class Consistency(StrEnum):
    """How a list is ordered and cut: from the key index (then verified live), or live."""

    INDEXED = "INDEXED"
    LIVE = "LIVE"
