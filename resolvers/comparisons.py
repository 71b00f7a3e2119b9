"""compareStudy / comparePatient: what is missing where, down to instance level.

The per-instance walk is lazy: it runs only when the client asks for
`inSync`, `missing` or `conflicts`, once per study and request.
"""

from __future__ import annotations

import asyncio

import strawberry

from gateway.federation.compare import StudyDiff, compare_study
from gateway.federation.fanout import OK, Outcome
from gateway.sources.base import StudyRecord
from resolvers.common import (
    FieldConflict,
    SourceResult,
    conflicts,
    source_obj,
    source_results,
    sources_of,
)
from resolvers.context import Info
from resolvers.loaders import Fed
from resolvers.privacy import identity, identity_conflicts
from resolvers.types import Source, SourceStatus


@strawberry.type
class StudyInSource:
    """What one source holds of a study."""

    source: Source
    present: bool
    series: int | None
    instances: int | None
    latency_ms: float | None
    status: SourceStatus


@strawberry.type
class MissingObject:
    """An object some sources hold and others lack."""

    level: str
    uid: str
    missing_from: list[Source]
    present_in: list[Source]


async def walk(info: Info, study_uid: str, fed: Fed[StudyRecord]) -> StudyDiff:
    """Series and instances of the study in every source holding it, compared."""
    loaders = info.context.loaders
    series, instances = await asyncio.gather(
        loaders.series_by_study.load(study_uid), loaders.instances_by_study.load(study_uid)
    )
    studies = {s: (rs[0] if rs else None) for s, rs in fed.answered.items()}
    return compare_study(study_uid, studies, series.answered, instances.answered)


@strawberry.type
class StudyComparison:
    """One study compared across sources."""

    study_instance_uid: str
    fed: strawberry.Private[Fed[StudyRecord]]
    _diff: strawberry.Private[asyncio.Task[StudyDiff] | None] = None

    async def diff(self, info: Info) -> StudyDiff:
        """The instance-level comparison, computed once."""
        if self._diff is None:
            self._diff = asyncio.ensure_future(walk(info, self.study_instance_uid, self.fed))
        return await self._diff

    async def synced(self, info: Info) -> bool:
        """Same series and instances in every answering source, no conflicts, none failed."""
        failed = any(o.status != OK for o in self.fed.outcomes)
        return not failed and (await self.diff(info)).in_sync

    @strawberry.field
    async def in_sync(self, info: Info) -> bool:
        """Same series and instances in every answering source, no conflicts, none failed."""
        return await self.synced(info)

    @strawberry.field
    def sources(self, info: Info) -> list[StudyInSource]:
        """Per source: presence and counts (from the study query, no walk)."""
        out = []
        for o in self.fed.outcomes:
            records = self.fed.answered.get(o.source) or []
            r = records[0] if records else None
            out.append(
                StudyInSource(
                    source=source_obj(info.context, o.source),
                    present=r is not None,
                    series=r.series_count if r else None,
                    instances=r.instance_count if r else None,
                    latency_ms=o.latency_ms,
                    status=SourceStatus(o.status),
                )
            )
        return out

    @strawberry.field
    async def missing(self, info: Info) -> list[MissingObject]:
        """Studies, series and instances missing somewhere."""
        ctx = info.context
        return [
            MissingObject(
                level=m.level,
                uid=m.uid,
                missing_from=sources_of(ctx, m.missing_from),
                present_in=sources_of(ctx, m.present_in),
            )
            for m in (await self.diff(info)).missing
        ]

    @strawberry.field(name="conflicts")
    async def field_conflicts(self, info: Info) -> list[FieldConflict]:
        """Attributes that differ, at every level."""
        found = (await self.diff(info)).conflicts
        return conflicts(info.context, identity_conflicts(info, found))


@strawberry.type
class PatientComparison:
    """Every study of one patient compared across sources."""

    asked: strawberry.Private[str]
    outcomes: strawberry.Private[list[Outcome[list[StudyRecord]]]]
    studies: list[StudyComparison]

    @strawberry.field
    def patient_id(self, info: Info) -> str:
        """The patient ID compared."""
        return identity(info, "patientId", self.asked, self.asked)

    @strawberry.field
    async def in_sync(self, info: Info) -> bool:
        """Every study in sync, and every source answered."""
        if any(o.status != OK for o in self.outcomes):
            return False
        results = await asyncio.gather(*(s.synced(info) for s in self.studies))
        return all(results)

    @strawberry.field
    def source_results(self, info: Info) -> list[SourceResult]:
        """How each source answered the patient's study query."""
        return source_results(info.context, self.outcomes)
