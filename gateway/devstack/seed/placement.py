"""Where each study lives, the way real hospitals spread them over archives.

Sources are taken by position: the first is the mirror (orthanc), the second the
main archive (dcm4chee), the third the legacy archive. Most studies sit in main
and mirror, some in main and legacy, a few in all three or in one only. Copies
outside the main archive sometimes lack instances, spell the patient's name
differently or carry another StudyDescription. The RT planning study is always
complete and consistent in main and mirror. Every property is guaranteed at least
once when there are enough studies and sources.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from gateway.devstack.seed.model import CopySpec, PatientSpec, StudySpec
from gateway.devstack.seed.people import misspell

MIRROR, MAIN, LEGACY = 0, 1, 2
ROLES = {"mirror": MIRROR, "main": MAIN, "legacy": LEGACY}
COMBOS: tuple[tuple[tuple[int, ...], float], ...] = (
    ((MAIN, MIRROR), 55),
    ((MAIN, LEGACY), 15),
    ((MAIN, MIRROR, LEGACY), 5),
    ((MAIN,), 10),
    ((MIRROR,), 8),
    ((LEGACY,), 7),
)
P_MISSING = 0.08
P_DESCRIPTION = 0.06
P_MISSPELL = 0.04


def _copies(sources: Sequence[str], held: Sequence[str]) -> dict[str, CopySpec]:
    return {s: CopySpec() for s in sources if s in held}


def _eligible(study: StudySpec) -> bool:
    """A study whose copies may be altered: not the RT study, held twice or more."""
    return study.rt is None and len(study.copies) >= 2


def _has(study: StudySpec, keyword: str) -> bool:
    return any(keyword in c.overrides for c in study.copies.values())


def _secondary(study: StudySpec, main: str) -> list[str]:
    return [s for s in study.copies if s != main]


def place(
    rng: random.Random,
    studies: list[StudySpec],
    patients: list[PatientSpec],
    sources: Sequence[str],
) -> None:
    """Fill `study.copies` for every study and apply the disagreements."""
    main = sources[MAIN] if len(sources) > MAIN else sources[0]
    combos = [(tuple(sources[i] for i in idx), w) for idx, w in COMBOS if max(idx) < len(sources)]
    choices, weights = [c for c, _ in combos], [w for _, w in combos]
    for study in studies:
        held = sources[:2] if study.rt is not None else rng.choices(choices, weights)[0]
        study.copies = _copies(sources, held)
    if len(sources) < 2:
        return
    _ensure_single(studies, main)
    _misspell_names(rng, studies, patients, sources, main)
    _drop_instances(rng, studies, main)
    _change_descriptions(rng, studies, main)


def _ensure_single(studies: list[StudySpec], main: str) -> None:
    plain = [s for s in studies if s.rt is None and s.patient.misspell_hint is None]
    if plain and not any(len(s.copies) == 1 for s in plain):
        plain[-1].copies = {main: CopySpec()}


def _misspell_names(
    rng: random.Random,
    studies: list[StudySpec],
    patients: list[PatientSpec],
    sources: Sequence[str],
    main: str,
) -> None:
    by_patient: dict[str, list[StudySpec]] = {}
    for study in studies:
        by_patient.setdefault(study.patient.patient_id, []).append(study)
    for patient in patients:
        own = by_patient.get(patient.patient_id, [])
        if any(s.rt is not None for s in own):
            continue
        hint = ROLES.get(patient.misspell_hint or "")
        if hint is not None and hint < len(sources) and sources[hint] != main:
            target = sources[hint]
            if not any(_eligible(s) and target in s.copies for s in own) and own:
                own[0].copies = _copies(sources, (main, target))
            _apply_name(patient, own, target, rng)
        elif rng.random() < P_MISSPELL:
            candidates = [s for s in own if _eligible(s)]
            if candidates:
                _apply_name(patient, own, rng.choice(_secondary(candidates[0], main)), rng)
    if not any(_has(s, "PatientName") for s in studies if _eligible(s)):
        for study in studies:
            own = by_patient[study.patient.patient_id]
            if _eligible(study) and all(s.rt is None for s in own):
                _apply_name(study.patient, own, _secondary(study, main)[0], rng)
                break


def _apply_name(
    patient: PatientSpec, own: list[StudySpec], source: str, rng: random.Random
) -> None:
    alt = patient.alt_names.get(source) or misspell(patient.name, rng)
    patient.alt_names[source] = alt
    for study in own:
        if source in study.copies:
            study.copies[source].overrides["PatientName"] = alt


def _drop_from(rng: random.Random, study: StudySpec, main: str) -> None:
    copy = study.copies[rng.choice(_secondary(study, main))]
    series = rng.choice([s for s in study.series if len(s.instance_uids) >= 2])
    n = len(series.instance_uids)
    copy.missing.update(rng.sample(series.instance_uids, rng.randint(1, min(3, n - 1))))


def _drop_instances(rng: random.Random, studies: list[StudySpec], main: str) -> None:
    eligible = [s for s in studies if _eligible(s)]
    for study in eligible:
        if rng.random() < P_MISSING:
            _drop_from(rng, study, main)
    if eligible and not any(c.missing for s in eligible for c in s.copies.values()):
        _drop_from(rng, eligible[0], main)


def _describe(rng: random.Random, study: StudySpec, main: str) -> None:
    copy = study.copies[rng.choice(_secondary(study, main))]
    copy.overrides["StudyDescription"] = rng.choice(study.alt_descriptions)


def _change_descriptions(rng: random.Random, studies: list[StudySpec], main: str) -> None:
    eligible = [s for s in studies if _eligible(s)]
    for study in eligible:
        if rng.random() < P_DESCRIPTION:
            _describe(rng, study, main)
    if eligible and not any(_has(s, "StudyDescription") for s in eligible):
        _describe(rng, eligible[-1], main)
