"""The one order and the one paging every adapter applies to its records."""

from __future__ import annotations

import pytest

from gateway.sources.base import InstanceRecord, PatientRecord, SeriesRecord, StudyRecord
from gateway.sources.paging import (
    page,
    sort_instances,
    sort_patients,
    sort_series,
    sort_studies,
)


@pytest.mark.parametrize(
    ("offset", "limit", "expected"),
    [
        (0, None, [0, 1, 2, 3, 4]),
        (2, None, [2, 3, 4]),
        (1, 2, [1, 2]),
        (4, 10, [4]),
        (5, 1, []),
        (-3, 2, [0, 1]),  # a negative offset is the start
        (1, -1, []),  # a negative limit is an empty page
        (0, 0, []),
    ],
)
def test_page(offset: int, limit: int | None, expected: list[int]) -> None:
    rows = [0, 1, 2, 3, 4]
    assert page(rows, offset, limit) == expected
    assert page(tuple(rows), offset, limit) == expected  # any sequence, always a new list


def test_page_is_a_copy() -> None:
    rows = [1, 2]
    out = page(rows, 0, None)
    out.append(3)
    assert rows == [1, 2]


def test_patients_by_id_then_issuer() -> None:
    plain = [PatientRecord("B"), PatientRecord("A"), PatientRecord("C")]
    assert [p.patient_id for p in sort_patients(plain)] == ["A", "B", "C"]
    issued = [PatientRecord("B", "X"), PatientRecord("A", "Y"), PatientRecord("A", None)]
    assert [(p.patient_id, p.issuer) for p in sort_patients(issued)] == [
        ("A", None),
        ("A", "Y"),
        ("B", "X"),
    ]


def test_studies_and_series_by_uid() -> None:
    studies = [StudyRecord("1.3"), StudyRecord("1.10"), StudyRecord("1.2")]
    assert [s.study_uid for s in sort_studies(studies)] == ["1.10", "1.2", "1.3"]  # text order
    series = [SeriesRecord("2.2", "1.2"), SeriesRecord("2.1", "1.3"), SeriesRecord("2.1", "1.2")]
    assert [(s.study_uid, s.series_uid) for s in sort_series(series)] == [
        ("1.2", "2.1"),
        ("1.2", "2.2"),
        ("1.3", "2.1"),
    ]


def test_instances_by_series_then_number_then_uid() -> None:
    def inst(sop: str, series: str, number: int | None) -> InstanceRecord:
        return InstanceRecord(sop, series, "1.2", instance_number=number)

    found = sort_instances(
        [
            inst("3.9", "2.1", None),
            inst("3.1", "2.1", 10),
            inst("3.2", "2.1", 2),
            inst("3.0", "2.0", 5),
            inst("3.8", "2.1", None),
            inst("3.3", "2.1", 2),
        ]
    )
    # numbered before unnumbered; a number is compared as a number, not as text
    assert [i.sop_instance_uid for i in found] == ["3.0", "3.2", "3.3", "3.1", "3.8", "3.9"]
