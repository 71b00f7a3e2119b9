"""Merging and comparing records from several sources; fan-out under faults."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.core.errors import SourceProtocolError
from gateway.core.settings import SourceConfig
from gateway.federation.compare import compare_study
from gateway.federation.fanout import ERROR, OK, SKIPPED, TIMEOUT, fan_out
from gateway.federation.merge import merge_patients, merge_studies
from gateway.sources.base import InstanceRecord, PatientRecord, SeriesRecord, StudyRecord


def test_patients_merge_presence_and_conflicts() -> None:
    merged = merge_patients(
        {
            "a": [PatientRecord("P2", name="Doe^Jane"), PatientRecord("P1", name="Müller^Jürgen")],
            "b": [PatientRecord("P1", name="Muller^Jurgen", sex="M")],
            "c": [],
        }
    )
    assert [m.key for m in merged] == ["P1", "P2"]
    p1, p2 = merged
    assert p1.present_in == ("a", "b") and p1.missing_from == ("c",)
    assert p1.value("name") == "Müller^Jürgen" and p1.value("sex") == "M"
    assert [c.field for c in p1.conflicts] == ["name"]
    assert p1.conflicts[0].values == (("a", "Müller^Jürgen"), ("b", "Muller^Jurgen"))
    assert p2.missing_from == ("b", "c") and p2.conflicts == ()


def test_patients_with_one_id_under_two_issuers_stay_apart() -> None:
    from gateway.federation.merge import split_key

    merged = merge_patients(
        {
            "a": [PatientRecord("P1", issuer="HOSP-A", name="A^One")],
            "b": [PatientRecord("P1", issuer="HOSP-B", name="B^Two")],
            "c": [PatientRecord("P1", name="C^Three"), PatientRecord("P2", name="X^Y")],
        }
    )
    assert [split_key(m.key) for m in merged] == [
        ("P1", ""),
        ("P1", "HOSP-A"),
        ("P1", "HOSP-B"),
        ("P2", None),
    ]
    assert [m.present_in for m in merged[:3]] == [("c",), ("a",), ("b",)]
    assert all(m.conflicts == () for m in merged)


def test_a_missing_issuer_joins_the_only_issuer() -> None:
    merged = merge_patients(
        {"a": [PatientRecord("P1", issuer="HOSP-A")], "b": [PatientRecord("P1")]}
    )
    assert [m.key for m in merged] == ["P1"] and merged[0].present_in == ("a", "b")


def test_studies_conflict_on_modalities_and_description() -> None:
    merged = merge_studies(
        {
            "a": [StudyRecord("1.2", description="CT HEAD", modalities=("CT",))],
            "b": [StudyRecord("1.2", description="CT head", modalities=("CT", "RTSTRUCT"))],
        }
    )
    assert {c.field for c in merged[0].conflicts} == {"description", "modalities"}


def _instances(study: str, series: str, uids: list[str]) -> list[InstanceRecord]:
    return [InstanceRecord(u, series, study) for u in uids]


def test_compare_study_walks_to_instances() -> None:
    s1, s2 = SeriesRecord("S1", "ST"), SeriesRecord("S2", "ST")
    diff = compare_study(
        "ST",
        {"a": StudyRecord("ST"), "b": StudyRecord("ST"), "c": None},
        {"a": [s1, s2], "b": [s1]},
        {
            "a": _instances("ST", "S1", ["i1", "i2", "i3"]) + _instances("ST", "S2", ["j1"]),
            "b": _instances("ST", "S1", ["i1", "i3"]),
        },
    )
    levels = {(m.level, m.uid): m.missing_from for m in diff.missing}
    assert levels == {("STUDY", "ST"): ("c",), ("SERIES", "S2"): ("b",), ("INSTANCE", "i2"): ("b",)}
    assert not diff.in_sync
    assert [(h.source, h.present, h.series, h.instances) for h in diff.holdings] == [
        ("a", True, 2, 4),
        ("b", True, 1, 2),
        ("c", False, None, None),
    ]


def test_compare_identical_study_is_in_sync() -> None:
    inst = _instances("ST", "S1", ["i1"])
    diff = compare_study(
        "ST",
        {"a": StudyRecord("ST"), "b": StudyRecord("ST")},
        {"a": [SeriesRecord("S1", "ST")], "b": [SeriesRecord("S1", "ST")]},
        {"a": inst, "b": inst},
    )
    assert diff.in_sync and diff.missing == ()


def test_a_holder_whose_instance_query_failed_is_incomplete_not_missing() -> None:
    inst = _instances("ST", "S1", ["i1", "i2"])
    series = [SeriesRecord("S1", "ST")]
    diff = compare_study(
        "ST",
        {"a": StudyRecord("ST"), "b": StudyRecord("ST")},
        {"a": series, "b": series},
        {"a": inst},  # b's instance query timed out
    )
    assert diff.missing == () and diff.incomplete == ("b",)
    assert not diff.in_sync
    assert [(h.source, h.series, h.instances) for h in diff.holdings] == [
        ("a", 1, 2),
        ("b", 1, None),
    ]


class _Fake:
    def __init__(self, ident: str, behaviour: str, timeout_s: float = 0.2) -> None:
        self.config = SourceConfig(id=ident, kind="orthanc", url="http://h", timeout_s=timeout_s)
        self.behaviour = behaviour

    @property
    def id(self) -> str:
        return self.config.id

    async def find(self) -> list[int]:
        if self.behaviour == "hang":
            await asyncio.sleep(30)
        if self.behaviour == "error":
            raise SourceProtocolError(self.id, "HTTP 500")
        return [1, 2]


async def test_fan_out_isolates_failures() -> None:
    sources: dict[str, Any] = {
        "ok": _Fake("ok", "ok"),
        "bad": _Fake("bad", "error"),
        "slow": _Fake("slow", "hang"),
    }
    start = time.monotonic()
    outcomes = await fan_out(sources, lambda s: s.find(), skipped=["off"])
    elapsed = time.monotonic() - start
    by = {o.source: o for o in outcomes}
    assert by["ok"].status == OK and by["ok"].value == [1, 2]
    assert by["bad"].status == ERROR and "HTTP 500" in (by["bad"].error or "")
    assert by["slow"].status == TIMEOUT and by["slow"].value is None
    assert by["off"].status == SKIPPED
    assert elapsed < 0.2 * 1.1 + 0.05
