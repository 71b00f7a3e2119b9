"""DICOM attribute matching (PS3.4 C.2.2.2) done locally.

Used to compensate for archives that match differently, e.g. dcmqrscp, which
matches person names case-sensitively, and to filter results consistently.
"""

from __future__ import annotations

import re
from functools import lru_cache

from gateway.sources.normalize import person_name


@lru_cache(maxsize=256)
def _wildcard_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts) + r"\Z", re.IGNORECASE if ignore_case else 0)


def has_wildcard(pattern: str) -> bool:
    """True when `pattern` uses `*` or `?`."""
    return "*" in pattern or "?" in pattern


def match_string(pattern: str | None, value: str | None, ignore_case: bool = False) -> bool:
    """Single-value matching with `*`/`?` wildcards; an empty pattern matches anything."""
    if not pattern or pattern == "*":
        return True
    if value is None:
        return False
    return _wildcard_regex(pattern, ignore_case).match(value) is not None


def match_person_name(pattern: str | None, value: str | None) -> bool:
    """PN matching, case-insensitive, on the alphabetic group.

    A pattern without `^` and without wildcards matches the family name or the
    whole name, as most archives do for a plain "Smith".
    """
    if not pattern or pattern == "*":
        return True
    name = person_name(value)
    if name is None:
        return False
    if match_string(pattern, name, ignore_case=True):
        return True
    return match_string(pattern.rstrip("^") + "^*", name, ignore_case=True)


def parse_date_range(pattern: str) -> tuple[str | None, str | None]:
    """ "A-B", "A-", "-B" or "A" as (low, high), inclusive."""
    if "-" not in pattern:
        return pattern, pattern
    low, _, high = pattern.partition("-")
    return low or None, high or None


def match_date(pattern: str | None, value: str | None) -> bool:
    """DA range matching ("YYYYMMDD", "A-B", "A-", "-B")."""
    if not pattern:
        return True
    if value is None:
        return False
    low, high = parse_date_range(pattern)
    return (low is None or value >= low) and (high is None or value <= high)


def match_uid_list(uids: tuple[str, ...], value: str | None) -> bool:
    """UID list matching; an empty list matches anything."""
    return not uids or value in uids
