"""Private attributes under DICOM PS3.15 Annex E.

The Basic Profile removes every private attribute (Table E.1-1, "(gggg,eeee)
where gggg is odd": X). The Retain Safe Private Option (PS3.15 E.3.10) keeps
those known to be safe: the safe-list is `safe_private.csv` (Table E.3.10-1 of
the edition named there), matched by private creator, group and element offset
within the creator's block (PS3.5 7.8.1). A private creator element is kept
only while its block keeps at least one element.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from pydicom.dataset import Dataset

_CSV = Path(__file__).with_name("safe_private.csv")


@cache
def safe_list() -> frozenset[tuple[str, int, int]]:
    """(private creator, group, element offset) of every safe private attribute."""
    lines = (line for line in _CSV.read_text(encoding="utf-8").splitlines() if line[:1] != "#")
    return frozenset(
        (r["creator"].strip(), int(r["group"], 16), int(r["element"], 16))
        for r in csv.DictReader(lines)
    )


def creators(ds: Dataset) -> dict[tuple[int, int], str]:
    """(group, block) -> private creator string, for the private creator elements of `ds`."""
    out: dict[tuple[int, int], str] = {}
    for tag in list(ds.keys()):
        if tag.group % 2 == 1 and 0x0010 <= tag.element <= 0x00FF:
            value = ds[tag].value
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            out[(tag.group, tag.element)] = str(value or "").strip()
    return out


def is_safe(tag: int, owners: dict[tuple[int, int], str]) -> bool:
    """True when the private data element `tag` is on the safe-list (creator included)."""
    group, element = tag >> 16, tag & 0xFFFF
    if element < 0x1000:
        return False
    creator = owners.get((group, element >> 8))
    return creator is not None and (creator, group, element & 0xFF) in safe_list()
