"""Local DICOM matching semantics."""

from __future__ import annotations

import pytest

from gateway.sources.matching import match_date, match_person_name, match_string, match_uid_list
from gateway.sources.normalize import date, modalities, person_name


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("MARTIN*", "Martin^Paul", True),
        ("martin", "MARTIN^Paul", True),
        ("mart?n^p*", "Martin^Paul", True),
        ("Müller*", "MÜLLER^Jürgen", True),
        ("Martin^Paul", "Martin^Pauline", False),
        ("*ine", "Martin^Pauline", True),
        ("Smith", "Smithson^A", False),
        (None, None, True),
    ],
)
def test_person_names_case_insensitive(
    pattern: str | None, value: str | None, expected: bool
) -> None:
    assert match_person_name(pattern, value) is expected


def test_strings_dates_uids() -> None:
    assert match_string("PID-00?", "PID-001")
    assert not match_string("pid-001", "PID-001")
    assert match_string("pid-001", "PID-001", ignore_case=True)
    assert match_date("20200101-20201231", "20200615")
    assert not match_date("20200101-20201231", "20210101")
    assert match_date("20200101-", "20990101") and match_date("-20200101", "19990101")
    assert match_date("20200101", "20200101") and not match_date("20200101", None)
    assert match_uid_list(("1.2", "1.3"), "1.3") and not match_uid_list(("1.2",), "1.3")


def test_normalisers() -> None:
    assert person_name({"Alphabetic": "Doe^John^^^"}) == "Doe^John"
    assert person_name("Yamada^Tarou=山田^太郎") == "Yamada^Tarou"
    assert date("2020-01-02") == "20200102"
    assert modalities("MR\\CT\\CT") == ("CT", "MR")
