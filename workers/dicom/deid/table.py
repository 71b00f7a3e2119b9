"""The attribute table of DICOM PS3.15 Annex E (Table E.1-1), kept as data.

`table_e1_1.csv` beside this module holds every row of Table E.1-1 of the edition
named in `EDITION`: the Basic Profile action and the action of each option column
(PS3.15 E.3). `compile_actions` resolves, for a set of chosen options, one action
per tag:

- an option column overrides the Basic Profile when its option is chosen; when
  two chosen options disagree on a row, "C" (clean) wins over "K" (keep), the
  more protective choice;
- a combination ("X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*") becomes its last
  non-removing action (Z, D or U), so that an attribute a Type 1 or Type 2
  requirement of the IOD may need stays present (PS3.15 E.1.1, "unless ... would
  be required to maintain IOD conformance"). This is the resolution where the
  attribute's type is not known; `iod.py` resolves the attributes whose type in
  the instance's IOD it knows (X for a Type 3, Z for a Type 2), at the top level.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from workers.dicom.deid.options import OPTIONS

EDITION = "PS3.15 2024e"
_CSV = Path(__file__).with_name("table_e1_1.csv")
OPTION_COLUMNS = (
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_long_full_dates",
    "retain_long_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
)
ACTIONS = frozenset({"D", "Z", "X", "K", "C", "U"})
COMBINATIONS = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}


@dataclass(frozen=True, slots=True)
class Row:
    """One row of Table E.1-1: tag pattern, name, Basic Profile action, option actions."""

    tag: str  # "00100010", "60XX3000", "50XXXXXX" or "GGGGEEEE" (private)
    name: str
    in_std_comp_iod: bool
    basic: str
    options: dict[str, str]


@dataclass(frozen=True, slots=True)
class Actions:
    """The resolved action per tag for one option set; repeating groups by (mask, value)."""

    by_tag: dict[int, str]
    repeating: tuple[tuple[int, int, str], ...]  # (mask, value, action)
    private: str  # "X", or "C" with Retain Safe Private

    def lookup(self, tag: int) -> str | None:
        """The action for `tag`, or None when the table does not name it."""
        action = self.by_tag.get(tag)
        if action is None:
            for mask, value, rep in self.repeating:
                if tag & mask == value:
                    return rep
        return action


@cache
def rows() -> tuple[Row, ...]:
    """Every row of the table, in tag order."""
    lines = (line for line in _CSV.read_text(encoding="utf-8").splitlines() if line[:1] != "#")
    out = []
    for rec in csv.DictReader(lines):
        opts = {c: rec[c] for c in OPTION_COLUMNS if rec[c]}
        out.append(Row(rec["tag"], rec["name"], rec["in_std_comp_iod"] == "Y", rec["basic"], opts))
    return tuple(out)


def resolve(row: Row, columns: Iterable[str]) -> str:
    """The action of one row under the chosen option columns (raw, combinations kept)."""
    chosen = [row.options[c] for c in columns if c in row.options]
    if "C" in chosen:
        return "C"
    if "K" in chosen:
        return "K"
    return row.basic


def effective(action: str) -> str:
    """A single action letter for a table action (combinations resolved, see module doc)."""
    if action in ACTIONS:
        return action
    return COMBINATIONS[action]


def _columns(options: frozenset[str]) -> list[str]:
    return [c for o in sorted(options) if (c := OPTIONS[o].column) is not None]


@cache
def raw_actions(options: frozenset[str]) -> dict[int, str]:
    """The table action per (non-repeating) tag under a set of options, combinations kept."""
    columns = _columns(options)
    return {
        int(row.tag, 16): resolve(row, columns)
        for row in rows()
        if "X" not in row.tag and row.tag != "GGGGEEEE"
    }


@cache
def compile_actions(options: frozenset[str]) -> Actions:
    """The resolved action per tag for a set of option names (see `OPTIONS`)."""
    columns = _columns(options)
    by_tag: dict[int, str] = {}
    repeating: list[tuple[int, int, str]] = []
    private = "X"
    for row in rows():
        action = effective(resolve(row, columns))
        if row.tag == "GGGGEEEE":
            private = action
        elif "X" in row.tag:
            mask = int("".join("0" if ch == "X" else "F" for ch in row.tag), 16)
            value = int(row.tag.replace("X", "0"), 16)
            repeating.append((mask, value, action))
        else:
            by_tag[int(row.tag, 16)] = action
    return Actions(by_tag, tuple(repeating), private)
