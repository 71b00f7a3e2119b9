"""Per-request dataloaders: every resolver's PACS I/O goes through these.

Each loader batches the keys of one request into one upstream call per
source (UID lists where the archive supports them) and keeps, per key, what
every source answered plus how each source fared.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiodataloader import DataLoader

from gateway.federation.fanout import Outcome, Strikes, fan_out
from gateway.jobs.events import Event
from gateway.jobs.store import JobStore
from gateway.sources.base import (
    InstanceQuery,
    InstanceRecord,
    PacsSource,
    SeriesQuery,
    SeriesRecord,
    StudyQuery,
    StudyRecord,
)

R = TypeVar("R")
K = TypeVar("K")


@dataclass(slots=True)
class Fed(Generic[R]):
    """What the answering sources hold for one key, and how every source fared."""

    answered: dict[str, list[R]] = field(default_factory=dict)
    outcomes: list[Outcome[Any]] = field(default_factory=list)

    def holders(self) -> list[str]:
        """Sources that answered and hold at least one record."""
        return [s for s, rs in self.answered.items() if rs]


def group(
    keys: Sequence[K],
    outcomes: list[Outcome[list[R]]],
    key_of: Callable[[R], K],
) -> list[Fed[R]]:
    """Split each source's answer by key, in `keys` order."""
    feds: dict[K, Fed[R]] = {k: Fed(outcomes=list(outcomes)) for k in keys}
    for o in outcomes:
        if not o.ok:
            continue
        by_key: dict[K, list[R]] = defaultdict(list)
        for record in o.value or []:
            by_key[key_of(record)].append(record)
        for k, fed in feds.items():
            fed.answered[o.source] = by_key.get(k, [])
    return [feds[k] for k in keys]


class _FedLoader(DataLoader[Any, Any]):
    def __init__(
        self, sources: Mapping[str, PacsSource], only: Sequence[str], strikes: Strikes
    ) -> None:
        super().__init__()
        self.sources = sources
        self.only = list(only)
        self.strikes = strikes


class StudiesByPatient(_FedLoader):
    """Studies of patients, keyed by PatientID.

    One key: a study query by that PatientID. Several keys (a page of patients):
    one study query per source with `hint` (the patient filter as study keys),
    grouped locally: at most one upstream request per source.
    """

    def __init__(
        self,
        sources: Mapping[str, PacsSource],
        only: Sequence[str],
        strikes: Strikes,
        hint: StudyQuery | None = None,
    ) -> None:
        super().__init__(sources, only, strikes)
        self.hint = hint

    async def batch_load_fn(self, keys: list[str]) -> list[Fed[StudyRecord]]:
        """One study query per source with a hint; without one, one per patient."""
        if len(keys) > 1 and self.hint is not None:
            hint = self.hint
            outcomes = await fan_out(
                self.sources, lambda s: s.find_studies(hint), self.only, strikes=self.strikes
            )
            return group(keys, outcomes, lambda r: r.patient_id or "")

        async def per_source(s: PacsSource) -> list[StudyRecord]:
            answers = await asyncio.gather(
                *(s.find_studies(StudyQuery(patient_id=k)) for k in keys)
            )
            return [r for a in answers for r in a]

        outcomes = await fan_out(self.sources, per_source, self.only, strikes=self.strikes)
        return group(keys, outcomes, lambda r: r.patient_id or "")


class StudiesByUid(_FedLoader):
    """Studies keyed by StudyInstanceUID: one UID-list query per source."""

    async def batch_load_fn(self, keys: list[str]) -> list[Fed[StudyRecord]]:
        """One study query per source."""
        query = StudyQuery(study_uids=tuple(keys))
        outcomes = await fan_out(
            self.sources, lambda s: s.find_studies(query), self.only, strikes=self.strikes
        )
        return group(keys, outcomes, lambda r: r.study_uid)


class SeriesByStudy(_FedLoader):
    """Series keyed by StudyInstanceUID: one UID-list query per source."""

    async def batch_load_fn(self, keys: list[str]) -> list[Fed[SeriesRecord]]:
        """One series query per source."""
        query = SeriesQuery(study_uids=tuple(keys))
        outcomes = await fan_out(
            self.sources, lambda s: s.find_series(query), self.only, strikes=self.strikes
        )
        return group(keys, outcomes, lambda r: r.study_uid)


class InstancesByStudy(_FedLoader):
    """Instances keyed by StudyInstanceUID: one instance query per study and source."""

    async def batch_load_fn(self, keys: list[str]) -> list[Fed[InstanceRecord]]:
        """Instance queries per source, the studies of one source concurrently."""

        async def per_source(s: PacsSource) -> list[InstanceRecord]:
            answers = await asyncio.gather(
                *(s.find_instances(InstanceQuery(study_uid=k)) for k in keys)
            )
            return [r for a in answers for r in a]

        outcomes = await fan_out(self.sources, per_source, self.only, strikes=self.strikes)
        return group(keys, outcomes, lambda r: r.study_uid)


@dataclass
class Loaders:
    """Every dataloader of one request (never shared between requests)."""

    studies_by_patient: StudiesByPatient
    studies_by_uid: StudiesByUid
    series_by_study: SeriesByStudy
    instances_by_study: InstancesByStudy
    _scoped: dict[tuple[tuple[str, ...], StudyQuery], StudiesByPatient] = field(
        default_factory=dict
    )

    def studies_of_page(self, only: Sequence[str], hint: StudyQuery) -> StudiesByPatient:
        """The studies loader of one `patients` field (its sources and filter as the hint);
        aliased fields with other filters get their own."""
        key = (tuple(only), hint)
        if key not in self._scoped:
            base = self.studies_by_patient
            self._scoped[key] = StudiesByPatient(base.sources, only, base.strikes, hint)
        return self._scoped[key]


def make_loaders(
    sources: Mapping[str, PacsSource], query_sources: Sequence[str], strikes: Strikes | None = None
) -> Loaders:
    """Fresh loaders over the sources with role `query`, sharing the request's `strikes`."""
    strikes = strikes if strikes is not None else Strikes()
    return Loaders(
        StudiesByPatient(sources, query_sources, strikes),
        StudiesByUid(sources, query_sources, strikes),
        SeriesByStudy(sources, query_sources, strikes),
        InstancesByStudy(sources, query_sources, strikes),
    )


class JobEventsLoader(DataLoader[str, list[Event]]):
    """Every requested job's events in one query, oldest first."""

    def __init__(self, store: JobStore) -> None:
        super().__init__()
        self.store = store

    async def batch_load_fn(self, keys: list[str]) -> list[list[Event]]:
        """Events of each job."""
        events = await self.store.events_of(keys)
        return [list(events[k]) for k in keys]
