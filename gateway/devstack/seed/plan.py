"""`build_demo`: the deterministic plan of who holds what, and its file bytes on demand."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from gateway.devstack.seed.images import charset_for, iter_series
from gateway.devstack.seed.model import RT_STRUCTURE_SET, PatientSpec, StudySpec
from gateway.devstack.seed.people import make_patients
from gateway.devstack.seed.placement import place
from gateway.devstack.seed.rtdicom import rtstruct_bytes
from gateway.devstack.seed.rtstruct import Sphere, contour_volume_mm3, contours
from gateway.devstack.seed.studies import StudyCounter, make_studies
from gateway.devstack.seed.truth import (
    GroundTruth,
    PatientTruth,
    RoiTruth,
    RtStructTruth,
    SeriesTruth,
    StudyTruth,
)

DEFAULT_SOURCES = ("orthanc", "dcm4chee", "legacy")


class DemoPlan:
    """Patients and studies placed over archives; bytes are generated lazily per archive."""

    def __init__(
        self,
        seed: int,
        sources: Sequence[str],
        patients: list[PatientSpec],
        studies: list[StudySpec],
    ) -> None:
        self.seed = seed
        self.sources = tuple(sources)
        self.patients = patients
        self.studies = studies
        self._truth: GroundTruth | None = None

    def _check(self, source_id: str) -> None:
        if source_id not in self.sources:
            raise KeyError(source_id)

    def count(self, source_id: str) -> int:
        """Number of instances `source_id` should hold."""
        self._check(source_id)
        return sum(
            sum(len(uids) for uids in study.held_instances(source_id).values())
            for study in self.studies
        )

    def iter_files(self, source_id: str) -> Iterator[bytes]:
        """Part 10 bytes of every instance `source_id` should hold, one at a time."""
        self._check(source_id)
        for study in self.studies:
            copy = study.copies.get(source_id)
            if copy is None:
                continue
            for series in study.series:
                if series.sop_class_uid == RT_STRUCTURE_SET:
                    if series.instance_uids[0] not in copy.missing:
                        yield rtstruct_bytes(study, copy)
                else:
                    yield from iter_series(study, copy, series)

    @property
    def truth(self) -> GroundTruth:
        """The ground truth of this plan (computed once)."""
        if self._truth is None:
            self._truth = GroundTruth(
                seed=self.seed,
                sources=list(self.sources),
                instance_counts={s: self.count(s) for s in self.sources},
                patients=_patients_truth(self.patients, self.studies, self.sources),
                studies=[_study_truth(s) for s in self.studies],
                rtstructs=[_rt_truth(s) for s in self.studies if s.rt is not None],
            )
        return self._truth


def build_demo(
    seed: int = 42, patients: int = 20, sources: Sequence[str] = DEFAULT_SOURCES
) -> DemoPlan:
    """The demo data set for `seed`: `patients` patients over 1-3 archives (see placement)."""
    if patients < 1:
        raise ValueError("patients must be at least 1")
    ids = tuple(sources)
    if not 1 <= len(ids) <= 3 or len(set(ids)) != len(ids):
        raise ValueError("sources must be 1 to 3 distinct ids (mirror, main, legacy)")
    rng = random.Random(seed)
    people = make_patients(rng, patients)
    counter = StudyCounter(index=0, accession_base=rng.randrange(1_000_000, 50_000_000))
    studies: list[StudySpec] = []
    for i, patient in enumerate(people):
        studies.extend(make_studies(rng, seed, patient, counter, rt=i == 0))
    place(rng, studies, people, ids)
    return DemoPlan(seed, ids, people, studies)


def _patients_truth(
    patients: list[PatientSpec], studies: list[StudySpec], sources: tuple[str, ...]
) -> list[PatientTruth]:
    by_patient: dict[str, list[StudySpec]] = {}
    for study in studies:
        by_patient.setdefault(study.patient.patient_id, []).append(study)
    out = []
    for patient in patients:
        own = by_patient.get(patient.patient_id, [])
        names: dict[str, str] = {}
        for study in own:
            for source, copy in study.copies.items():
                names[source] = copy.overrides.get("PatientName", patient.name)
        out.append(
            PatientTruth(
                patient_id=patient.patient_id,
                name=patient.name,
                birth_date=patient.birth_date,
                sex=patient.sex,
                specific_character_set=charset_for({"PatientName": patient.name}),
                names={src: names[src] for src in sources if src in names},
                sources=[src for src in sources if src in names],
                study_uids=[s.study_uid for s in own],
            )
        )
    return out


def _study_truth(study: StudySpec) -> StudyTruth:
    held = {src: study.held_instances(src) for src in study.copies}
    conflicts: dict[str, dict[str, str]] = {}
    canonical = {"PatientName": study.patient.name, "StudyDescription": study.description}
    for field in sorted({k for c in study.copies.values() for k in c.overrides}):
        values = {src: c.overrides.get(field, canonical[field]) for src, c in study.copies.items()}
        if len(set(values.values())) > 1:
            conflicts[field] = values
    return StudyTruth(
        study_uid=study.study_uid,
        patient_id=study.patient.patient_id,
        study_date=study.date,
        study_time=study.time,
        accession_number=study.accession,
        description=study.description,
        modalities=list(study.modalities),
        sources=list(study.copies),
        series_counts={src: len(h) for src, h in held.items()},
        instance_counts={src: sum(len(u) for u in h.values()) for src, h in held.items()},
        series=[
            SeriesTruth(
                series_uid=s.series_uid,
                modality=s.modality,
                series_number=s.number,
                description=s.description,
                sop_class_uid=s.sop_class_uid,
                rows=s.rows,
                columns=s.columns,
                instance_uids=list(s.instance_uids),
            )
            for s in study.series
        ],
        instances=held,
        missing={src: sorted(c.missing) for src, c in study.copies.items() if c.missing},
        conflicts=conflicts,
    )


def _rt_truth(study: StudySpec) -> RtStructTruth:
    rt = study.rt
    assert rt is not None
    grid = rt.grid
    ct = next(s for s in study.series if s.series_uid == rt.ct_series_uid)
    rois = []
    for number, shape in enumerate(rt.shapes, start=1):
        radius, size = (shape.radius, None) if isinstance(shape, Sphere) else (None, shape.size)
        rois.append(
            RoiTruth(
                number=number,
                name=shape.name,
                shape=shape.kind,
                center_mm=list(shape.center),
                radius_mm=radius,
                size_mm=None if size is None else list(size),
                volume_cm3=shape.volume_mm3 / 1000,
                surface_cm2=shape.surface_mm2 / 100,
                contour_volume_cm3=contour_volume_mm3(shape, grid) / 1000,
                contours=len(contours(shape, grid)),
                interpreted_type=shape.interpreted_type,
                color=list(shape.color),
            )
        )
    return RtStructTruth(
        patient_id=study.patient.patient_id,
        study_uid=study.study_uid,
        sources=list(study.copies),
        frame_of_reference_uid=study.frame_uid,
        ct_series_uid=rt.ct_series_uid,
        ct_instance_uids=list(ct.instance_uids),
        rtstruct_series_uid=rt.rtstruct_series_uid,
        rtstruct_instance_uid=rt.rtstruct_uid,
        rows=grid.rows,
        columns=grid.columns,
        pixel_spacing_mm=grid.spacing,
        slice_thickness_mm=grid.thickness,
        first_position_mm=list(grid.position(0)),
        slice_z_mm=[grid.z(k) for k in range(grid.slices)],
        rois=rois,
    )
