"""Table E.1-1 as data, checked against rows copied from the standard's own publication.

The rows below were copied from the HTML edition of PS3.15 (2020b, Table E.1-1),
not from the 2024e table the engine loads: rows whose actions changed between
the two editions (Patient ID, Treatment Machine Name, Treatment Site) are left out.
Columns: tag, Basic Profile, then the Retain UIDs, Retain Device Identity, Retain
Institution Identity, Retain Patient Characteristics, Retain Longitudinal Full
Dates, Retain Longitudinal Modified Dates, Clean Descriptors and Clean Structured
Content option columns.
"""

from __future__ import annotations

import pytest

from workers.dicom.deid import EDITION, OptionError, compile_actions, parse_options, rows
from workers.dicom.deid.table import COMBINATIONS, effective

COLUMNS = (
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_long_full_dates",
    "retain_long_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
)
STANDARD_ROWS = [
    ("00080050", "Z", "", "", "", "", "", "", "", ""),  # Accession Number
    ("00380010", "X", "", "", "", "", "", "", "", ""),  # Admission ID
    ("300A00DD", "X", "", "", "", "", "", "", "C", ""),  # Bolus Description
    ("00120030", "Z", "", "", "K", "", "", "", "", ""),  # Clinical Trial Site ID
    ("30100017", "Z", "", "", "", "", "", "", "C", ""),  # Conceptual Volume Description
    ("00080023", "Z/D", "", "", "", "", "K", "C", "", ""),  # Content Date
    ("0040A07C", "X", "", "", "", "", "", "", "", ""),  # Custodial Organization Sequence
    ("FFFAFFFA", "X", "", "", "", "", "", "", "", ""),  # Digital Signatures Sequence
    ("30100035", "D", "", "", "", "", "", "", "C", ""),  # Entity Label
    ("00340002", "D", "", "", "", "", "", "", "", ""),  # Flow Identifier
    ("0016008C", "X", "", "", "", "", "", "", "", ""),  # GPS Area Information
    ("0016007B", "X", "", "", "", "", "", "", "", ""),  # GPS DOP
    ("0016007D", "X", "", "", "", "", "", "", "", ""),  # GPS Speed
    ("00084000", "X", "", "", "", "", "", "", "C", ""),  # Identifying Comments
    ("00080082", "X/Z/D", "", "", "K", "", "", "", "", ""),  # Institution Code Sequence
    ("4008010B", "X", "", "", "", "", "", "", "C", ""),  # Interpretation Text
    ("00281214", "U", "K", "", "", "", "", "", "", ""),  # Large Palette Color Lookup Table UID
    ("00020003", "U", "K", "", "", "", "", "", "", ""),  # Media Storage SOP Instance UID
    ("0040A192", "X", "", "", "", "", "K", "C", "", ""),  # Observation Date (Trial)
    ("04000561", "X", "", "", "", "", "", "", "", ""),  # Original Attributes Sequence
    ("00101010", "X", "", "", "", "K", "", "", "", ""),  # Patient's Age
    ("00100040", "Z", "", "", "", "K", "", "", "", ""),  # Patient's Sex
    ("00400243", "X", "", "", "", "", "", "", "", ""),  # Performed Location
    ("00400242", "X", "", "K", "", "", "", "", "", ""),  # Performed Station Name
    (
        "00081062",
        "X",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ),  # Physician(s) Reading Study Identification Sequence
    ("30100061", "X", "", "", "", "", "", "", "C", ""),  # Prior Treatment Dose Description
    ("3010005C", "Z", "", "", "", "", "", "", "C", ""),  # Reason for Superseding
    (
        "00404023",
        "U",
        "K",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ),  # Referenced General Purpose Scheduled Procedure Step Transaction UID
    ("00080092", "X", "", "", "", "", "", "", "", ""),  # Referring Physician's Address
    ("00401005", "X", "", "", "", "", "", "", "", ""),  # Requested Procedure Location
    ("300A0615", "Z", "", "", "", "", "", "", "", ""),  # RT Accessory Device Slot ID
    ("3010003B", "U", "K", "", "", "", "", "", "", ""),  # RT Treatment Phase UID
    ("00400002", "X", "", "", "", "", "K", "C", "", ""),  # Scheduled Procedure Step Start Date
    ("0020000E", "U", "K", "", "", "", "", "", "", ""),  # Series Instance UID
    ("00340005", "D", "", "", "", "", "", "", "", ""),  # Source Identifier
    ("00400554", "U", "K", "", "", "", "", "", "", ""),  # Specimen UID
    ("00200200", "U", "K", "", "", "", "", "", "", ""),  # Synchronization Frame of Reference UID
    ("00880904", "X", "", "", "", "", "", "", "", ""),  # Topic Title
    ("0040A124", "U", "", "", "", "", "", "", "", ""),  # UID
    ("00189371", "D", "", "K", "", "", "", "", "", ""),  # X-Ray Detector ID
    ("00400555", "X/Z", "", "", "", "", "", "", "", "C"),  # Acquisition Context Sequence
    ("00080022", "X/Z", "", "", "", "", "K", "C", "", ""),  # Acquisition Date
    ("0040A730", "D", "", "", "", "", "", "", "", "C"),  # Content Sequence
    ("00181000", "X/Z/D", "", "K", "", "", "", "", "", ""),  # Device Serial Number
    ("00102160", "X", "", "", "", "K", "", "", "", ""),  # Ethnic Group
    ("00080080", "X/Z/D", "", "", "K", "", "", "", "", ""),  # Institution Name
    ("00100030", "Z", "", "", "", "", "", "", "", ""),  # Patient's Birth Date
    ("00100010", "Z", "", "", "", "", "", "", "", ""),  # Patient's Name
    ("00081140", "X/Z/U*", "K", "", "", "", "", "", "", ""),  # Referenced Image Sequence
    ("00080018", "U", "K", "", "", "", "", "", "", ""),  # SOP Instance UID
    ("00081030", "X", "", "", "", "", "", "", "C", ""),  # Study Description
    ("0020000D", "U", "K", "", "", "", "", "", "", ""),  # Study Instance UID
]


def test_edition_is_named() -> None:
    assert EDITION.startswith("PS3.15 20")


def test_table_is_complete() -> None:
    table = rows()
    assert len(table) > 600
    assert len({r.tag for r in table}) == len(table)
    for row in table:
        assert row.basic in {"D", "Z", "X", "K", "C", "U"} or row.basic in COMBINATIONS, row
        assert set(row.options.values()) <= {"K", "C"}, row


@pytest.mark.parametrize("expected", STANDARD_ROWS, ids=[r[0] for r in STANDARD_ROWS])
def test_row_matches_the_standard(expected: tuple[str, ...]) -> None:
    tag, basic, *options = expected
    row = {r.tag: r for r in rows()}[tag]
    assert row.basic == basic
    for column, action in zip(COLUMNS, options, strict=True):
        assert row.options.get(column, "") == action, column


def test_private_and_repeating_rows() -> None:
    by_tag = {r.tag: r for r in rows()}
    assert by_tag["GGGGEEEE"].basic == "X"
    assert by_tag["GGGGEEEE"].options == {"retain_safe_private": "C"}
    assert by_tag["60XX3000"].basic == "X"
    assert by_tag["50XXXXXX"].basic == "X"


def test_compiled_actions_follow_options() -> None:
    basic = compile_actions(frozenset())
    assert basic.lookup(0x00100010) == "Z"
    assert basic.lookup(0x00080022) == "Z"  # X/Z resolves to Z
    assert basic.lookup(0x00080080) == "D"  # X/Z/D resolves to D
    assert basic.lookup(0x00081140) == "U"  # X/Z/U* keeps the references, new UIDs
    assert basic.lookup(0x60023000) == "X"
    assert basic.lookup(0x50101234) == "X"
    assert basic.lookup(0x00280010) is None  # Rows: not in the table
    assert basic.private == "X"
    dates = compile_actions(frozenset({"RetainLongitudinalTemporalInformationModifiedDates"}))
    assert dates.lookup(0x00080022) == "C"
    both = compile_actions(
        frozenset({"RetainDeviceIdentity", "RetainLongitudinalTemporalInformationModifiedDates"})
    )
    assert both.lookup(0x300C0127) == "C"  # C wins over K
    assert compile_actions(frozenset({"RetainSafePrivate"})).private == "C"
    assert compile_actions(frozenset({"RetainUIDs"})).lookup(0x0020000D) == "K"


def test_effective_combinations() -> None:
    assert [effective(a) for a in ("X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*", "K")] == [
        "Z",
        "D",
        "D",
        "D",
        "U",
        "K",
    ]


def test_unknown_option_is_named() -> None:
    with pytest.raises(OptionError, match="RetainEverything"):
        parse_options(["CleanDescriptors", "RetainEverything"])
    with pytest.raises(OptionError):
        parse_options(
            [
                "RetainLongitudinalTemporalInformationFullDates",
                "RetainLongitudinalTemporalInformationModifiedDates",
            ]
        )
