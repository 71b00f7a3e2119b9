"""Profile options of DICOM PS3.15 Annex E.3 and their codes (PS3.16 CID 7050).

Option names are the contract's strings (`AnonymizeInput.options`). Each maps to
the column of Table E.1-1 it switches on (PS3.15 E.3.1-E.3.11) and to the code
recorded in De-identification Method Code Sequence (0012,0064), scheme "DCM".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")


@dataclass(frozen=True, slots=True)
class OptionInfo:
    """One selectable option: its Table E.1-1 column (None: no column) and CID 7050 code."""

    name: str
    column: str | None
    code: str
    meaning: str


OPTIONS: dict[str, OptionInfo] = {
    o.name: o
    for o in (
        OptionInfo("CleanPixelData", None, "113101", "Clean Pixel Data Option"),
        OptionInfo(
            "CleanStructuredContent",
            "clean_structured_content",
            "113104",
            "Clean Structured Content Option",
        ),
        OptionInfo("CleanDescriptors", "clean_descriptors", "113105", "Clean Descriptors Option"),
        OptionInfo(
            "RetainLongitudinalTemporalInformationFullDates",
            "retain_long_full_dates",
            "113106",
            "Retain Longitudinal Temporal Information Full Dates Option",
        ),
        OptionInfo(
            "RetainLongitudinalTemporalInformationModifiedDates",
            "retain_long_modified_dates",
            "113107",
            "Retain Longitudinal Temporal Information Modified Dates Option",
        ),
        OptionInfo(
            "RetainPatientCharacteristics",
            "retain_patient_characteristics",
            "113108",
            "Retain Patient Characteristics Option",
        ),
        OptionInfo(
            "RetainDeviceIdentity",
            "retain_device_identity",
            "113109",
            "Retain Device Identity Option",
        ),
        OptionInfo("RetainUIDs", "retain_uids", "113110", "Retain UIDs Option"),
        OptionInfo(
            "RetainSafePrivate", "retain_safe_private", "113111", "Retain Safe Private Option"
        ),
        OptionInfo(
            "RetainInstitutionIdentity",
            "retain_institution_identity",
            "113112",
            "Retain Institution Identity Option",
        ),
    )
}


class OptionError(ValueError):
    """An unknown or contradictory de-identification option; the message names it."""


def parse_options(names: Iterable[str] | None) -> frozenset[str]:
    """Check option names; `OptionError` names the first unknown one or a contradiction."""
    chosen = frozenset(names or ())
    for name in sorted(chosen):
        if name not in OPTIONS:
            raise OptionError(f"options: unknown de-identification option '{name}'")
    dates = {
        "RetainLongitudinalTemporalInformationFullDates",
        "RetainLongitudinalTemporalInformationModifiedDates",
    }
    if dates <= chosen:
        raise OptionError("options: choose either full dates or modified dates, not both")
    return chosen


def method_codes(options: Iterable[str]) -> list[tuple[str, str]]:
    """(code value, code meaning) for the profile and each option, in code order."""
    codes = [PROFILE_CODE] + [(OPTIONS[o].code, OPTIONS[o].meaning) for o in options]
    return sorted(set(codes))
