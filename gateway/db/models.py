"""SQLAlchemy models: jobs and their events, sync runs, audit events, users and credentials."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Job(Base):
    """One unit of long work; this row is the source of truth for its state."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default="QUEUED")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    phase: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # attempts made before the last retryJob: automatic retries count from there
    attempts_before_retry: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # seq of the job's newest event: the next one takes this plus one (see JobStore)
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    input: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # SHA-256 of the canonical input while the job may be resubmitted (cleared with a
    # redacted input): an identical active job is found without reading every input
    input_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(128), default="anonymous")
    owner: Mapped[str | None] = mapped_column(String(128), index=True)  # user id of the submitter
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.seq", cascade="all, delete-orphan"
    )


class JobViewer(Base):
    """A user other than the owner who may see a job: the recipient of a de-identified
    study (its pseudonyms, never its input)."""

    __tablename__ = "job_viewers"

    job_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)


class JobEvent(Base):
    """One recorded change of a job's state (what subscriptions replay).

    `seq` numbers a job's events 1, 2, 3, ... in the order they were recorded.
    """

    __tablename__ = "job_events"
    __table_args__ = (Index("ux_job_events_job_seq", "job_id", "seq", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float)
    phase: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="events")


class SyncRun(Base):
    """The outcome of syncing one study from one source to another."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    source: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(64))
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    instances_transferred: Mapped[int] = mapped_column(Integer, default=0)
    instances_skipped: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    verified: Mapped[bool] = mapped_column(default=False)
    missing_after: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class SyncCursor(Base):
    """Change-feed position per (source, destination) pair, so idle runs stay cheap."""

    __tablename__ = "sync_cursors"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    destination: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditEvent(Base):
    """Who did what to which object; opaque references only, never patient data."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_ref: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str | None] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the chain (gateway.auth.audit): None for events written before it existed
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class DeidMapping(Base):
    """Encrypted original identity behind a pseudonym, per project and de-identified study.

    `lookup` is a keyed hash of the pseudonym (not the pseudonym); `payload` is
    base64(nonce || AES-GCM ciphertext) of the original identifiers. Never exposed
    by the API: only `gateway.deid.reidentify` (audited) reads it.
    """

    __tablename__ = "deid_mappings"
    __table_args__ = (Index("ux_deid_mappings_row", "project", "lookup", "study_ref", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(128))
    lookup: Mapped[str] = mapped_column(String(64), index=True)
    study_ref: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(16))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class User(Base):
    """A person or a script account; `username_key` is the lower-cased, unique name."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(128))
    username_key: Mapped[str] = mapped_column(String(128), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(256))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    sources: Mapped[list[str] | None] = mapped_column(JSON)  # None: every source
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    groups: Mapped[list[Group]] = relationship(
        secondary="user_groups", back_populates="members", lazy="selectin"
    )


class Group(Base):
    """Roles and a source limit shared by its members."""

    __tablename__ = "groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    sources: Mapped[list[str] | None] = mapped_column(JSON)
    members: Mapped[list[User]] = relationship(
        secondary="user_groups", back_populates="groups", lazy="selectin"
    )


class UserGroup(Base):
    """Membership of a user in a group."""

    __tablename__ = "user_groups"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )


class Credential(Base):
    """A login session or an API token; only the digest of the secret is kept."""

    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "session" | "api"
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(128))
    prefix: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class IndexedStudy(Base):
    """One study as one archive holds it: the keys a page needs, nothing more (no pixels).

    Kept by `gateway.index` from each archive's change feed or date windows; it holds
    identity (patient ID, name, birth date) under the same rules as the rest of the database.
    """

    __tablename__ = "index_studies"
    __table_args__ = (
        Index("ix_index_studies_patient", "patient_id", "issuer"),
        Index("ix_index_studies_date", "study_date", "study_time", "study_uid"),
        # prefix searches (LIKE) use it in every collation (migration 0010)
        Index(
            "ix_index_studies_name", "name_key", postgresql_ops={"name_key": "varchar_pattern_ops"}
        ),
        Index("ix_index_studies_uid", "study_uid"),
    )

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    issuer: Mapped[str] = mapped_column(String(64), default="")  # "" when none
    patient_name: Mapped[str | None] = mapped_column(String(256))
    name_key: Mapped[str] = mapped_column(String(256), default="")  # folded, for prefix search
    birth_date: Mapped[str | None] = mapped_column(String(8))
    sex: Mapped[str | None] = mapped_column(String(16))
    study_date: Mapped[str] = mapped_column(String(8), default="")
    study_time: Mapped[str] = mapped_column(String(16), default="")
    accession_number: Mapped[str | None] = mapped_column(String(64))
    modalities: Mapped[str] = mapped_column(String(128), default="")  # "\\"-joined
    description: Mapped[str | None] = mapped_column(String(256))
    series_count: Mapped[int | None] = mapped_column(Integer)
    instance_count: Mapped[int | None] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class IndexCount(Base):
    """How many studies (or patients) are held by exactly one set of archives.

    Kept by every write to `index_studies`: a total over any archives is the sum over the
    sets that meet them, read without reading the index.
    """

    __tablename__ = "index_counts"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "study" or "patient"
    holders: Mapped[str] = mapped_column(Text, primary_key=True)  # sorted source ids, "\n"-joined
    n: Mapped[int] = mapped_column(BigInteger, default=0)


class IndexState(Base):
    """How far one archive's index is: its feed cursor and when it was last brought up to date."""

    __tablename__ = "index_state"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(String(128))
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    studies: Mapped[int] = mapped_column(Integer, default=0)
    built_at: Mapped[datetime | None] = mapped_column()
    refreshed_at: Mapped[datetime | None] = mapped_column()
    reconciled_at: Mapped[datetime | None] = mapped_column()
