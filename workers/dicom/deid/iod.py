"""Attribute types of the instance's IOD, for the actions of Table E.1-1 that depend on them.

PS3.15 E.1.1 asks that a de-identified instance stay a conforming IOD, and the
table's compound actions say how: X/Z is "X unless Z is required to maintain IOD
conformance (Type 3 versus Type 2)", X/D "Type 3 versus Type 1", X/Z/D "Type 3
versus Type 2 versus Type 1", X/Z/U* the same for sequences holding UID
references. `decide` applies that rule for one attribute type; a plain X on an
attribute the IOD requires becomes Z (Type 2) or D (Type 1), so that every Type 1
and Type 2 attribute the IOD needs is kept (Type 2: zero-length, never removed).

`TYPES` holds the types of the attributes these actions touch in the modules the
engine meets (PS3.3: Patient C.7.1.1, General Study C.7.2.1, General Series
C.7.3.1 and the series modules that replace it, General Equipment C.7.5.1 and
Enhanced General Equipment C.7.5.2, General Image C.7.6.1 and the image modules
that redefine its attributes, SOP Common C.12.1, Approval C.8.8.16), keyed by SOP
Class where the IOD differs. A conditional type (1C, 2C) names its condition, read
from the instance (`Flags`); while the condition does not hold the attribute is not
required and is treated as Type 3. An attribute the table does not know keeps the
table's own resolution (`table.COMBINATIONS`: the last non-removing action). The
types apply to the top level of the dataset (the IOD's modules); items inside
sequences keep the table's resolution. Where the standard leaves a doubt, the entry
takes the more required type, whose action conforms either way (zero-length is
allowed for a Type 3 attribute, a removed Type 2 is not). `tests/unit/test_deid_iod.py`
checks the Type 1 and 2 entries against dicom3tools' dciodvfy where it is installed.

`settle` fixes a condition the actions themselves break: Responsible Person Role
(0010,2298) is 1C, "required if Responsible Person is present and has a value";
once the person is removed or emptied, the role goes too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydicom.dataset import Dataset

from workers.dicom.deid.table import COMBINATIONS, Actions, compile_actions, raw_actions

# SOP Classes (PS3.4 B.5) and families, by exact UID or by a prefix ending in "."
PET = "1.2.840.10008.5.1.4.1.1.128"
ENHANCED_US_VOLUME = "1.2.840.10008.5.1.4.1.1.6.2"
OPHTHALMIC_PHOTOGRAPHY = ("1.2.840.10008.5.1.4.1.1.77.1.5.1", "1.2.840.10008.5.1.4.1.1.77.1.5.2")
RT = "1.2.840.10008.5.1.4.1.1.481."  # RT Series (C.8.8.1) and its successors
RT_APPROVAL = tuple(f"{RT}{n}" for n in (1, 3, 5, 8))  # RT Image, Structure Set, (Ion) Plan
SR = "1.2.840.10008.5.1.4.1.1.88."  # SR Document Series, Key Object Document Series
PRESENTATION_STATES = "1.2.840.10008.5.1.4.1.1.11."  # Presentation State Identification
WAVEFORMS = "1.2.840.10008.5.1.4.1.1.9."  # Waveform Identification
ENCAPSULATED = "1.2.840.10008.5.1.4.1.1.104."  # Encapsulated Document

# Conditions (`Flags` names), each read from the instance
ANIMAL = "animal"  # Patient Species Description or Species Code Sequence present
APPROVED = "approved"  # Approval Status is APPROVED or REJECTED
DERIVED = "derived"  # Image Type value 1 is DERIVED
ENHANCED = "enhanced"  # Shared Functional Groups Sequence present (multi-frame functional groups)


@dataclass(frozen=True, slots=True)
class Rule:
    """The type of one attribute: by default, and for the SOP Classes where it differs.

    A type is "1", "2" or "3", or "1C:<flag>" / "2C:<flag>" for a conditional type
    whose condition is one of the flags above; None: not known (the table's resolution)."""

    default: str | None
    by_class: tuple[tuple[str, str], ...] = ()


TYPES: dict[int, Rule] = {
    # Patient (C.7.1.1): Type 2C, "required if the Patient is an animal"
    0x00102203: Rule("2C:" + ANIMAL),  # Patient's Sex Neutered
    0x00102297: Rule("2C:" + ANIMAL),  # Responsible Person
    0x00102299: Rule("2C:" + ANIMAL),  # Responsible Organization
    # General Study (C.7.2.1)
    0x00081110: Rule("3"),  # Referenced Study Sequence
    # SOP Common (C.12.1)
    0x00080012: Rule("3"),  # Instance Creation Date
    0x00080013: Rule("3"),  # Instance Creation Time
    # General Series (C.7.3.1); PET Series (C.8.9.1), RT Series (C.8.8.1), SR Document
    # Series (C.17.1) and Key Object Document Series (C.17.6.1) where they differ
    0x00080021: Rule("3", ((PET, "1"),)),  # Series Date
    0x00080031: Rule("3", ((PET, "1"),)),  # Series Time
    0x00181030: Rule("3"),  # Protocol Name
    0x00081070: Rule("3", ((RT, "2"),)),  # Operators' Name
    0x00081072: Rule("3"),  # Operator Identification Sequence
    0x00081111: Rule("3", ((SR, "2"),)),  # Referenced Performed Procedure Step Sequence
    # General Equipment (C.7.5.1); Enhanced General Equipment (C.7.5.2), in the IODs
    # with multi-frame functional groups (Enhanced CT/MR/XA/US Volume/PET, SEG, ...)
    0x00080080: Rule("3"),  # Institution Name
    0x00080082: Rule("3"),  # Institution Code Sequence
    0x00081010: Rule("3"),  # Station Name
    0x00181000: Rule("1C:" + ENHANCED),  # Device Serial Number
    # General Image (C.7.6.1) / General Acquisition (C.7.10.1); the PET Image (C.8.9.4),
    # enhanced image, Waveform Identification (C.10.8) and Encapsulated Document
    # (C.24.2) modules where they differ
    0x00080022: Rule("3", ((PET, "2"),)),  # Acquisition Date
    0x00080032: Rule("3", ((PET, "2"),)),  # Acquisition Time
    0x0008002A: Rule(  # Acquisition DateTime
        "1C:" + ENHANCED, ((WAVEFORMS, "1"), (ENCAPSULATED, "2"))
    ),
    0x00081140: Rule("3"),  # Referenced Image Sequence
    0x00082112: Rule(  # Source Image Sequence
        "3",
        (
            (ENHANCED_US_VOLUME, "1C:" + DERIVED),
            *((uid, "2C:" + DERIVED) for uid in OPHTHALMIC_PHOTOGRAPHY),
        ),
    ),
    0x00181400: Rule("3"),  # Acquisition Device Processing Description (CR, DX Image)
    # Presentation State Identification (C.11.10): Type 1 in every presentation state
    0x00700082: Rule(None, ((PRESENTATION_STATES, "1"),)),  # Presentation Creation Date
    0x00700083: Rule(None, ((PRESENTATION_STATES, "1"),)),  # Presentation Creation Time
    # Approval (C.8.8.16), in the RT Image, Structure Set, Plan and Ion Plan IODs: 2C,
    # "required if Approval Status is APPROVED or REJECTED"
    0x300E0008: Rule(None, tuple((uid, "2C:" + APPROVED) for uid in RT_APPROVAL)),  # Reviewer Name
}


_DERIVED_RULES = frozenset(  # exact SOP Class UIDs (no family prefix needs the flag)
    key for rule in TYPES.values() for key, kind in rule.by_class if kind.endswith(":" + DERIVED)
)


def _matches(sop_class: str, key: str) -> bool:
    return sop_class.startswith(key) if key.endswith(".") else sop_class == key


def type_of(tag: int, sop_class: str, flags: frozenset[str]) -> str | None:
    """The attribute's type in this instance's IOD ("1", "2", "3"), None when not known."""
    rule = TYPES.get(tag)
    if rule is None:
        return None
    kind = rule.default
    for key, value in rule.by_class:
        if _matches(sop_class, key):
            kind = value
            break
    if kind is None or ":" not in kind:
        return kind
    base, flag = kind.split(":", 1)
    return base[0] if flag in flags else "3"


def decide(action: str, kind: str | None) -> str:
    """One action letter for a table action and the attribute's type (see module doc)."""
    if kind is None:
        return COMBINATIONS.get(action, action)
    if action == "X":
        return {"1": "D", "2": "Z"}.get(kind, "X")
    if action not in COMBINATIONS:
        return action
    parts = action.split("/")
    if kind == "3" and "X" in parts:
        return "X"
    if kind == "2" and "Z" in parts:
        return "Z"
    return COMBINATIONS[action]


def flags_of(ds: Dataset, sop_class: str = "") -> frozenset[str]:
    """The conditions of `TYPES` that hold for this instance (Image Type, whose value costs
    a conversion, is read only for the SOP Classes whose rules depend on it)."""
    out = []
    if 0x00102201 in ds or 0x00102202 in ds:
        out.append(ANIMAL)
    if 0x52009229 in ds:
        out.append(ENHANCED)
    if 0x300E0002 in ds and str(ds.get("ApprovalStatus", "")).strip() in ("APPROVED", "REJECTED"):
        out.append(APPROVED)
    if sop_class in _DERIVED_RULES and 0x00080008 in ds:
        image_type = ds.get("ImageType")
        first = image_type[0] if image_type and not isinstance(image_type, str) else image_type
        if str(first or "").strip().upper() == "DERIVED":
            out.append(DERIVED)
    return frozenset(out)


@lru_cache(maxsize=512)
def actions_for(options: frozenset[str], sop_class: str, flags: frozenset[str]) -> Actions:
    """The resolved actions for the top level of an instance of `sop_class` (see module doc)."""
    base = compile_actions(options)
    raw = raw_actions(options)
    by_tag = dict(base.by_tag)
    for tag in TYPES:
        action = raw.get(tag)
        if action is not None:
            by_tag[tag] = decide(action, type_of(tag, sop_class, flags))
    return Actions(by_tag, base.repeating, base.private)


def top_level_actions(ds: Dataset, options: frozenset[str]) -> Actions:
    """`actions_for` this instance: its SOP Class and the conditions that hold."""
    sop_class = str(ds.get("SOPClassUID", "") or "").strip()
    return actions_for(options, sop_class, flags_of(ds, sop_class))


def settle(ds: Dataset) -> None:
    """Drop what a condition no longer allows once the actions have run (see module doc)."""
    if 0x00102298 in ds and not ds.get("ResponsiblePerson"):
        del ds[0x00102298]
