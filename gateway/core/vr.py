"""Syntax of DICOM values (PS3.5 6.2) used as matching keys (PS3.4 C.2.2.2): the one check.

A key the archives would refuse or misread is refused in the gateway instead, with a
reason that names the rule and never the value: dates (DA) and times (TM), single or
as a range, no wildcards; UIDs whole (no wildcard, no list); other strings within their
VR's length and character set, wildcards `*` and `?` only where DICOM matches with them.
"""

from __future__ import annotations

import re
from datetime import date
from enum import Enum

from gateway.core.uids import is_uid

_DA = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})\Z")
_TM = re.compile(r"([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.[0-9]{1,6})?)?)?\Z")
# PS3.5 6.1.2: control characters (ESC aside, for character set switches) are not in
# strings; backslash separates values, which a single matching key has one of
_CONTROL = re.compile(r"[\x00-\x1a\x1c-\x1f\x7f\\]")
_CS = re.compile(r"[A-Z0-9 _]*\Z")


class VR(Enum):
    """Value representations of the matching keys the API takes."""

    DA = "DA"
    TM = "TM"
    UI = "UI"
    CS = "CS"
    SH = "SH"
    LO = "LO"
    PN = "PN"


# maximum length in characters (PS3.5 table 6.2-1); PN: five component groups of 64
MAX_CHARS = {VR.DA: 8, VR.TM: 13, VR.UI: 64, VR.CS: 16, VR.SH: 16, VR.LO: 64, VR.PN: 5 * 64}


def is_da(value: str) -> bool:
    """A calendar date `YYYYMMDD` (PS3.5 table 6.2-1, DA)."""
    m = _DA.match(value)
    if m is None:
        return False
    try:
        date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return False
    return True


def is_tm(value: str) -> bool:
    """A time `HH[MM[SS[.F{1,6}]]]` (PS3.5 table 6.2-1, TM; 60 seconds for a leap second)."""
    m = _TM.match(value)
    if m is None:
        return False
    hh, mm, ss = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    return hh < 24 and mm < 60 and ss <= 60


def _range_ok(value: str, vr: VR) -> bool:
    check = is_da if vr is VR.DA else is_tm
    if value.count("-") > 1:
        return False
    if "-" not in value:
        return check(value)
    low, _, high = value.partition("-")
    if not low and not high:
        return False
    if (low and not check(low)) or (high and not check(high)):
        return False
    if not (low and high):
        return True
    return low <= high if vr is VR.DA else _tm_key(low) <= _tm_key(high)


def _tm_key(value: str) -> str:
    whole, _, fraction = value.partition(".")
    return whole.ljust(6, "0") + "." + fraction.ljust(6, "0")


def is_date_key(value: str) -> bool:
    """A DA matching key: `D`, `D1-D2` (D1 ≤ D2), `D-` or `-D` (PS3.4 C.2.2.2.5)."""
    return _range_ok(value, VR.DA)


def is_time_key(value: str) -> bool:
    """A TM matching key: `T`, `T1-T2` (T1 ≤ T2), `T-` or `-T` (PS3.4 C.2.2.2.5)."""
    return _range_ok(value, VR.TM)


def key_refusal(value: str | None, vr: VR, *, wildcards: bool = True) -> str | None:
    """Why `value` is not a matching key of `vr` (None: it is one, or no key was given).

    `wildcards`: whether `*` and `?` may be used (never for DA, TM and UI). The reason
    states the rule, never the value.
    """
    if value is None or value == "":
        return None
    if vr is VR.DA:
        ok = is_date_key(value)
        return None if ok else "a date YYYYMMDD or a range A-B, A- or -B (no wildcards)"
    if vr is VR.TM:
        ok = is_time_key(value)
        return None if ok else "a time HHMMSS or a range A-B, A- or -B (no wildcards)"
    if vr is VR.UI:
        return None if is_uid(value) else "a DICOM UID (digits and dots, no wildcards)"
    if len(value) > MAX_CHARS[vr]:
        return f"at most {MAX_CHARS[vr]} characters"
    if _CONTROL.search(value):
        return "no control characters or backslashes"
    if not wildcards and ("*" in value or "?" in value):
        return "an exact value (no wildcards)"
    if vr is VR.CS and not _CS.match(value.upper()):
        return "letters, digits, spaces and underscores"
    return None
