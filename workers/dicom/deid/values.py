"""Replacement values for the D, Z and C actions of DICOM PS3.15 Annex E.

- D: "replace with a non-zero length value that may be a dummy value and
  consistent with the VR" (Table E.1-1 legend): `dummy(vr)`.
- Z: a zero-length value: `empty(vr)`.
- C: "replace with values of similar meaning known not to contain identifying
  information and consistent with the VR" (PS3.15 E.3.5, E.3.6): dates and
  date-times are shifted by the patient's whole-day offset (`shift_date`,
  `shift_datetime`; times are unchanged by a whole-day shift); text is cleaned by
  `Scrubber`, which removes every identifying value taken from the instance itself
  (names, IDs, dates, accession numbers, addresses) and every run of five or more
  digits and every date-like token. This cleaning is lexical, not semantic: it
  cannot recognise identifiers the instance does not hold elsewhere.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

DUMMY_TEXT = "ANONYMIZED"
_DUMMIES: dict[str, Any] = {
    "AE": "ANONYMIZED",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "SH": DUMMY_TEXT,
    "ST": DUMMY_TEXT,
    "UT": DUMMY_TEXT,
    "UC": DUMMY_TEXT,
    "PN": "ANONYMIZED",
    "UR": "urn:anonymized",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
    "SV": 0,
    "UV": 0,
    "AT": 0,
    "OB": b"\x00\x00",
    "OW": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "UN": b"\x00\x00",
}
_BYTES_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UT", "UC", "PN"})
_DIGITS = re.compile(r"\d{5,}")
_DATE_LIKE = re.compile(r"\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b")


def dummy(vr: str) -> Any:
    """A non-zero-length value valid for `vr` (PS3.15 Table E.1-1, action D)."""
    return _DUMMIES.get(vr.split(" or ")[0], DUMMY_TEXT)


def empty(vr: str) -> Any:
    """A zero-length value for `vr` (action Z)."""
    return b"" if vr in _BYTES_VRS else None


def shift_date(value: str, days: int) -> str:
    """A DA value ("YYYYMMDD") moved by `days`; a value that is not a full date becomes D."""
    text = value.strip()
    try:
        day = date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        return str(_DUMMIES["DA"])
    if len(text) != 8:
        return str(_DUMMIES["DA"])
    return (day + timedelta(days=days)).strftime("%Y%m%d")


def shift_datetime(value: str, days: int) -> str:
    """A DT value moved by `days`; time of day, fraction and offset kept."""
    text = value.strip()
    if len(text) < 8:
        return str(_DUMMIES["DT"])
    return shift_date(text[:8], days) + text[8:]


class Scrubber:
    """Removes identifying strings, taken from the instance itself, from free text."""

    def __init__(self, identifiers: set[str]) -> None:
        words = sorted({w for w in identifiers if len(w) >= 2}, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE) if words else None
        )

    def clean(self, text: str) -> str:
        """`text` with every identifier, long digit run and date-like token replaced by "*"."""
        if self._pattern is not None:
            text = self._pattern.sub("*", text)
        text = _DATE_LIKE.sub("*", text)
        return _DIGITS.sub("*", text)


def identifiers_of(values: list[str]) -> set[str]:
    """Identifying tokens of raw values: whole values, PN components and words of 3+ letters."""
    out: set[str] = set()
    for raw in values:
        value = raw.strip()
        if not value:
            continue
        out.add(value)
        for part in re.split(r"[\^=\\ ,]+", value):
            if len(part) >= 3:
                out.add(part)
    return out
