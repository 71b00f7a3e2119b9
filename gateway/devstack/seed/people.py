"""Synthetic patients: curated names first (non-ASCII, shared prefixes), then random ones."""

from __future__ import annotations

import random
import unicodedata

from gateway.devstack.seed.model import PatientSpec

# (name, sex, source role that misspells it or None); roles: "mirror", "legacy"
CURATED: tuple[tuple[str, str, str | None], ...] = (
    ("BERGER^THOMAS", "M", None),  # the RT planning patient
    ("Müller^Jürgen", "M", "legacy"),
    ("MARTIN^PAUL", "M", None),
    ("Dupré^Élodie", "F", None),
    ("Martin^Sophie", "F", "mirror"),
    ("Łukasiewicz^Zoë", "F", None),
    ("MARTINEZ^CARLOS", "M", None),
    ("Παπαδόπουλος^Νίκος", "M", None),
    ("Martinelli^Giulia", "F", None),
    ("Иванова^Анна", "F", None),
    ("MARTIN^Luc", "M", None),
)

FAMILY = (
    "SMITH", "JOHNSON", "BROWN", "TAYLOR", "WILSON", "DAVIES", "EVANS", "THOMAS", "ROBERTS",
    "WALKER", "WRIGHT", "HUGHES", "GREEN", "HALL", "WOOD", "CLARKE", "JACKSON", "MARTIN",
    "MARTINEZ", "GARCIA", "LOPEZ", "ROSSI", "BIANCHI", "SCHMIDT", "SCHNEIDER", "FISCHER",
    "WEBER", "MEYER", "WAGNER", "BECKER", "DUBOIS", "LAMBERT", "BERNARD", "PETIT", "JANSSEN",
    "DE VRIES", "NOWAK", "KOWALSKI", "NOVAK", "HORVAT", "JENSEN", "HANSEN", "NIELSEN",
    "O'BRIEN", "MURPHY", "KELLY", "SILVA", "SANTOS", "COSTA", "PEREIRA", "KIM", "NGUYEN",
)  # fmt: skip
FAMILY_NON_ASCII = (
    "García", "Müller", "Schröder", "Öztürk", "Søreide", "Kovačević", "Żak", "Gonçalves",
    "Åström", "Nuñez", "Brontë", "Dvořák",
)  # fmt: skip
GIVEN_M = (
    "JAMES", "JOHN", "ROBERT", "MICHAEL", "DAVID", "PETER", "THOMAS", "MARK", "PAUL", "ANDREW",
    "LUCAS", "HUGO", "MARCO", "LUCA", "JAN", "PIETER", "KLAUS", "STEFAN", "PIOTR", "TOMAS",
)  # fmt: skip
GIVEN_F = (
    "MARY", "ANNA", "EMMA", "SARAH", "LAURA", "JULIA", "CLAIRE", "SOPHIE", "MARIA", "ELENA",
    "CHLOE", "LENA", "EVA", "INGRID", "KATARZYNA", "FREYA", "ALICE", "NORA", "IDA", "ROSA",
)  # fmt: skip
GIVEN_NON_ASCII = {
    "M": ("José", "Jörg", "Håkon", "Łukasz"),
    "F": ("Chloé", "Zoë", "Renée", "Małgorzata"),
}
_STRIP = str.maketrans({"Ł": "L", "ł": "l", "ß": "ss", "Ø": "O", "ø": "o", "Æ": "AE", "æ": "ae"})


def is_ascii(text: str) -> bool:
    """True when every character is 7-bit ASCII."""
    return text.isascii()


def strip_diacritics(text: str) -> str:
    """Latin letters without their accents ("Müller" -> "Muller"); other scripts unchanged."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_STRIP))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def misspell(name: str, rng: random.Random) -> str:
    """A plausibly misspelled variant of `name`, always different from it.

    Accented Latin names lose their accents (an archive without UTF-8); others get
    two adjacent letters of the given name swapped, or one letter dropped.
    """
    stripped = strip_diacritics(name)
    if stripped != name and stripped.isascii():
        return stripped
    family, _, given = name.partition("^")
    in_given = len(given) >= 3
    target = given if in_given else family
    pairs = [i for i in range(len(target) - 1) if target[i] != target[i + 1]]
    if pairs and rng.random() < 0.6:
        i = rng.choice(pairs)
        changed = target[:i] + target[i + 1] + target[i] + target[i + 2 :]
    else:
        i = rng.randrange(1, len(target))
        changed = target[:i] + target[i + 1 :]
    return f"{family}^{changed}" if in_given else f"{changed}^{given}"


def _random_name(rng: random.Random, sex: str) -> str:
    if rng.random() < 0.1:
        family = rng.choice(FAMILY_NON_ASCII)
        given = rng.choice(GIVEN_NON_ASCII[sex])
        return f"{family}^{given}"
    family = rng.choice(FAMILY)
    given = rng.choice(GIVEN_M if sex == "M" else GIVEN_F)
    if rng.random() < 0.25:  # some systems store mixed case
        return f"{family.title()}^{given.title()}"
    return f"{family}^{given}"


def _birth_date(rng: random.Random) -> str:
    year = rng.randint(1930, 2012)
    return f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"


def make_patients(rng: random.Random, count: int) -> list[PatientSpec]:
    """`count` patients with unique MRN-style ids; the curated ones come first."""
    numbers = rng.sample(range(1_000_000, 10_000_000), count)
    patients = []
    for i in range(count):
        if i < len(CURATED):
            name, sex, hint = CURATED[i]
        else:
            sex, hint = rng.choice("MF"), None
            name = _random_name(rng, sex)
        patients.append(
            PatientSpec(
                patient_id=f"MRN{numbers[i]}",
                name=name,
                birth_date=_birth_date(rng),
                sex=sex,
                misspell_hint=hint,
            )
        )
    return patients
