"""Applying the resolved Table E.1-1 actions to a dataset at every depth (DICOM PS3.15 E.1.1).

Actions (Table E.1-1 legend): X remove; Z zero-length value; D dummy value; K keep;
C clean; U replace the UID consistently. For a sequence: X removes it, Z empties
it, K, C and U keep its items and process them with the same rules, and D keeps
its items but replaces every value inside them by a dummy (UIDs are still
mapped, so references keep resolving), except the values that carry the items'
structure and no text: code strings (CS: Value Type, Relationship Type, Continuity
of Content, Graphic Type...: enumerated values, which a dummy makes invalid) and
numbers, binary or as text (US, UL, SS, SL, FL, FD, SV, UV, AT, IS, DS: Referenced
Content Item Identifier, Referenced Frame Number, coordinates, measured values). A
Content Sequence (D) of a structured report so stays a valid content tree of dummy
text (PS3.15 E.1.1). Elements the table names keep their own action inside such items.
Attributes the table does not name are kept, except: every UI-valued attribute is
replaced as by U (the DICOM-defined UIDs of the `1.2.840.10008` root, and attributes
that hold class or syntax UIDs, stay), private attributes follow `private.py`, and
overlay groups (60xx) are removed whole once their data are (Table E.1-1 rows (60xx,3000)).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from workers.dicom.deid import private, values
from workers.dicom.deid.table import Actions

DICOM_ROOT = "1.2.840.10008."
# VRs a D on a sequence leaves as they are in its items (see module doc)
STRUCTURE_VRS = frozenset(
    {"SQ", "CS", "US", "UL", "SS", "SL", "FL", "FD", "SV", "UV", "AT", "IS", "DS"}
)
KEEP_UID_TAGS = frozenset(
    {
        0x00020002,  # Media Storage SOP Class UID
        0x00020010,  # Transfer Syntax UID
        0x00020012,  # Implementation Class UID
        0x00041510,  # Referenced SOP Class UID in File
        0x00041512,  # Referenced Transfer Syntax UID in File
        0x00080016,  # SOP Class UID
        0x0008001A,  # Related General SOP Class UID
        0x0008001B,  # Original Specialized SOP Class UID
        0x00080062,  # SOP Classes in Study
        0x0008010C,  # Coding Scheme UID
        0x00080117,  # Context UID
        0x00080118,  # Mapping Resource UID
        0x00081150,  # Referenced SOP Class UID
    }
)


@dataclass
class Walker:
    """State for one instance: the actions, the UID map and the cleaning helpers."""

    actions: Actions
    map_uid: Callable[[str], str]
    retain_uids: bool
    shift_days: int | None
    scrubber: Callable[[], values.Scrubber]
    counts: Counter[str] = field(default_factory=Counter)

    def walk(self, ds: Dataset, dummy_mode: bool = False, top: Actions | None = None) -> None:
        """Apply the actions to every element of `ds` and of its sequences, in place.

        `top`: the actions for the elements of `ds` itself (the IOD-aware ones of
        `iod.py` for an instance's top level); items of its sequences get `actions`."""
        actions = self.actions if top is None else top
        owners: dict[tuple[int, int], str] | None = None
        kept_blocks: set[tuple[int, int]] = set()
        creator_tags: list[int] = []
        for key in list(ds.keys()):
            tag = int(key)
            group = tag >> 16
            vr = ds.get_item(key).VR  # raw element: no value conversion yet
            if group & 1:
                if owners is None:
                    owners = private.creators(ds)
                if (tag & 0xFFFF) < 0x0100:
                    creator_tags.append(tag)
                elif actions.private == "C" and private.is_safe(tag, owners):
                    kept_blocks.add((group, (tag & 0xFFFF) >> 8))
                    self._keep(ds[key], dummy_mode)
                    self.counts["private_kept"] += 1
                else:
                    del ds[tag]
                    self.counts["private_removed"] += 1
                continue
            if 0x6000 <= group <= 0x601E and ds.get((group, 0x3000)) is not None:
                action: str | None = "X"
            else:
                action = actions.lookup(tag)
            if action is None and not dummy_mode and vr not in ("UI", "SQ", "UN", None):
                continue  # kept as read: the common case, and the cheap one
            if action == "X":
                del ds[tag]  # removed: no need to decode the value first
                self.counts["X"] += 1
                continue
            elem = ds[key]
            if action is None:
                action = "D" if dummy_mode and elem.VR not in STRUCTURE_VRS else None
            if action is None:
                self._keep(elem, dummy_mode)
            else:
                self._apply(ds, elem, action, dummy_mode)
        for tag in creator_tags:  # (gggg,00bb): kept only while its block keeps an element
            if (tag >> 16, tag & 0xFF) not in kept_blocks:
                del ds[tag]
                self.counts["private_removed"] += 1

    def _keep(self, elem: DataElement, dummy_mode: bool) -> None:
        if elem.VR == "SQ":
            for item in elem.value:
                self.walk(item, dummy_mode)
        elif elem.VR == "UI" and not self.retain_uids and int(elem.tag) not in KEEP_UID_TAGS:
            self._replace_uids(elem)

    def _apply(self, ds: Dataset, elem: DataElement, action: str, dummy_mode: bool) -> None:
        self.counts[action] += 1
        vr = elem.VR
        if action == "X":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = [] if vr == "SQ" else values.empty(vr)
        elif action == "K":
            self._keep(elem, dummy_mode)
        elif vr == "SQ":
            for item in elem.value:
                self.walk(item, dummy_mode or action == "D")
        elif vr == "UI" and action in ("U", "D", "C"):
            self._replace_uids(elem)
        elif action == "C":
            self._clean(elem)
        else:  # D, or U on a non-UID value
            elem.value = values.dummy(vr)

    def _replace_uids(self, elem: DataElement) -> None:
        value = elem.value
        if not value:
            return
        if isinstance(value, MultiValue | list):
            elem.value = [self._map(str(v)) for v in value]
        else:
            elem.value = self._map(str(value))
        self.counts["uids_replaced"] += 1

    def _map(self, uid: str) -> str:
        uid = uid.strip().rstrip("\x00")
        return uid if not uid or uid.startswith(DICOM_ROOT) else self.map_uid(uid)

    def _clean(self, elem: DataElement) -> None:
        vr, value = elem.VR, elem.value
        if value is None or value == "":
            return
        many = isinstance(value, MultiValue | list)
        items = [str(v) for v in value] if many else [str(value)]
        if vr in ("DA", "DT") and self.shift_days is not None:
            shift = values.shift_date if vr == "DA" else values.shift_datetime
            out = [shift(v, self.shift_days) if v else v for v in items]
        elif vr == "TM" and self.shift_days is not None:
            return  # a whole-day shift leaves times of day unchanged
        elif vr in values.TEXT_VRS:
            scrub = self.scrubber()
            out = [scrub.clean(v) for v in items]
        else:
            elem.value = values.dummy(vr)
            return
        elem.value = out if many else out[0]
