"""Comparing one study across sources, down to instance level. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.federation.merge import (
    Conflict,
    merge_instances,
    merge_series,
    merge_studies,
)
from gateway.sources.base import InstanceRecord, SeriesRecord, StudyRecord


@dataclass(frozen=True, slots=True)
class Missing:
    """An object some sources hold and others lack."""

    level: str  # "STUDY" | "SERIES" | "INSTANCE"
    uid: str
    missing_from: tuple[str, ...]
    present_in: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Holding:
    """What one answering source holds of the study."""

    source: str
    present: bool
    series: int | None
    instances: int | None


@dataclass(frozen=True, slots=True)
class StudyDiff:
    """The comparison of one study across the sources that answered."""

    study_uid: str
    holdings: tuple[Holding, ...]
    missing: tuple[Missing, ...]
    conflicts: tuple[Conflict, ...]
    incomplete: tuple[str, ...] = ()  # holders whose series or instance query failed

    @property
    def in_sync(self) -> bool:
        """Every holder answered at every level with the same series and instances, and no
        attribute conflicts."""
        return not self.missing and not self.conflicts and not self.incomplete


def compare_study(
    study_uid: str,
    studies: Mapping[str, StudyRecord | None],
    series: Mapping[str, Sequence[SeriesRecord]],
    instances: Mapping[str, Sequence[InstanceRecord]],
) -> StudyDiff:
    """Compare a study's records from every answering source (None: source lacks it).

    Series and instances are compared only among the sources holding the study and
    answering at that level (`series` and `instances` hold the sources that answered):
    a holder whose query failed is incomplete, never "missing" everything.
    """
    order = list(studies)
    holders = [s for s in order if studies[s] is not None]
    lacking = [s for s in order if studies[s] is None]
    missing: list[Missing] = []
    if lacking and holders:
        missing.append(Missing("STUDY", study_uid, tuple(lacking), tuple(holders)))
    study_conflicts = merge_studies({s: [r] for s in holders if (r := studies[s]) is not None})
    conflicts = list(study_conflicts[0].conflicts) if study_conflicts else []
    in_series = [s for s in holders if s in series]
    in_instances = [s for s in holders if s in instances]
    incomplete = tuple(s for s in holders if s not in in_series or s not in in_instances)
    merged_series = merge_series({s: series[s] for s in in_series}, in_series)
    for m in merged_series:
        if m.missing_from:
            missing.append(Missing("SERIES", m.key, m.missing_from, m.present_in))
        conflicts.extend(m.conflicts)
    lacking_series = {m.key: set(m.missing_from) for m in merged_series}
    for mi in merge_instances({s: instances[s] for s in in_instances}, in_instances):
        series_uid = mi.first.series_uid
        # an instance of a whole missing series is reported once, at series level
        skip = lacking_series.get(series_uid, set())
        absent = tuple(s for s in mi.missing_from if s not in skip)
        if absent:
            missing.append(Missing("INSTANCE", mi.key, absent, mi.present_in))
        conflicts.extend(mi.conflicts)
    holdings = tuple(
        Holding(
            s,
            studies[s] is not None,
            len(series[s]) if studies[s] is not None and s in series else None,
            len(instances[s]) if studies[s] is not None and s in instances else None,
        )
        for s in order
    )
    return StudyDiff(study_uid, holdings, tuple(missing), tuple(conflicts), incomplete)
