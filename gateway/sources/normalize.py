"""Normalisation of DICOM values into the records' string forms, whatever the archive."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def text(value: Any) -> str | None:
    """A trimmed string, or None for empty values."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        value = "\\".join(str(v) for v in value)
    s = str(value).strip().rstrip("\x00").strip()
    return s or None


def person_name(value: Any) -> str | None:
    """The alphabetic group of a PN ("FAMILY^GIVEN"), trailing carets removed.

    Accepts a DICOM JSON PN object ({"Alphabetic": ...}), a pydicom PersonName or a string.
    """
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("Alphabetic")
    s = text(value)
    if s is None:
        return None
    s = s.split("=")[0].rstrip("^").strip()
    return s or None


def date(value: Any) -> str | None:
    """A DA value as "YYYYMMDD" (accepts "YYYY-MM-DD" and "YYYY.MM.DD")."""
    s = text(value)
    if s is None:
        return None
    s = s.replace("-", "").replace(".", "")
    return s


def time_(value: Any) -> str | None:
    """A TM value as "HHMMSS[.ffffff]" (accepts "HH:MM:SS")."""
    s = text(value)
    return None if s is None else s.replace(":", "")


def integer(value: Any) -> int | None:
    """An IS/US value as int, None when absent or not a number."""
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value == "":
        return None
    try:
        return int(float(str(value).strip()))
    except ValueError:
        return None


def modalities(values: Iterable[Any] | str | None) -> tuple[str, ...]:
    """ModalitiesInStudy as a sorted tuple without duplicates."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = values.split("\\")
    return tuple(sorted({s for v in values if (s := text(v))}))
