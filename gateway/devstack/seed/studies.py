"""Study templates (CT and MR protocols) and the studies generated from them."""

from __future__ import annotations

import random
from dataclasses import dataclass

from gateway.devstack.seed.model import (
    AXIAL,
    CORONAL,
    CT_IMAGE,
    MR_IMAGE,
    RT_STRUCTURE_SET,
    SAGITTAL,
    PatientSpec,
    RtSpec,
    SeriesSpec,
    StudySpec,
)
from gateway.devstack.seed.rtstruct import Grid, phantom_shapes
from gateway.devstack.seed.uids import derive_uid


@dataclass(frozen=True, slots=True)
class SeriesTemplate:
    """One series of a protocol: description, plane, slice thickness (mm), matrix size."""

    description: str
    orientation: tuple[float, ...]
    thickness: float
    size: int


@dataclass(frozen=True, slots=True)
class StudyTemplate:
    """One protocol with its usual series and other spellings of its description."""

    modality: str
    description: str
    alternates: tuple[str, ...]
    body_part: str
    fov_mm: float
    series: tuple[SeriesTemplate, ...]


S = SeriesTemplate
TEMPLATES: tuple[StudyTemplate, ...] = (
    StudyTemplate("CT", "CT HEAD W/O CONTRAST", ("CT HEAD", "CT Schaedel nativ"), "HEAD", 240,
                  (S("Axial 5.0 mm", AXIAL, 5, 32), S("Axial 2.5 mm Bone", AXIAL, 2.5, 64),
                   S("Coronal MPR 3 mm", CORONAL, 3, 32))),
    StudyTemplate("CT", "CT THORAX", ("CT CHEST", "Thorax CT"), "CHEST", 360,
                  (S("Axial 5.0 mm", AXIAL, 5, 64), S("Lung 1.25 mm", AXIAL, 1.25, 64),
                   S("Coronal MPR 3 mm", CORONAL, 3, 32))),
    StudyTemplate("CT", "CT ABDOMEN PELVIS WITH CONTRAST", ("CT ABD/PELVIS W", "CT ABDOMEN"),
                  "ABDOMEN", 380,
                  (S("Portal venous 5 mm", AXIAL, 5, 64), S("Arterial 2.5 mm", AXIAL, 2.5, 32),
                   S("Sagittal MPR 3 mm", SAGITTAL, 3, 32))),
    StudyTemplate("CT", "CTA PULMONARY", ("CT ANGIO CHEST", "CTPA"), "CHEST", 340,
                  (S("CTA 1 mm", AXIAL, 1, 64), S("MIP 10 mm", AXIAL, 10, 32))),
    StudyTemplate("MR", "MR BRAIN", ("MRI HEAD", "MR Schaedel"), "BRAIN", 230,
                  (S("T1 SAG", SAGITTAL, 5, 32), S("T2 AX", AXIAL, 5, 64),
                   S("FLAIR AX", AXIAL, 5, 64), S("DWI AX", AXIAL, 5, 32))),
    StudyTemplate("MR", "MR KNEE LEFT", ("MRI KNEE", "MR Knie links"), "KNEE", 160,
                  (S("PD FS COR", CORONAL, 3, 32), S("T1 COR", CORONAL, 3, 32),
                   S("PD SAG", SAGITTAL, 3, 64))),
    StudyTemplate("MR", "MR LUMBAR SPINE", ("MRI L-SPINE", "MR LWS"), "LSPINE", 300,
                  (S("T2 SAG", SAGITTAL, 4, 64), S("T1 SAG", SAGITTAL, 4, 32),
                   S("T2 AX", AXIAL, 4, 32))),
)  # fmt: skip
REFERRING = (
    "WELBY^MARCUS", "HOUSE^GREGORY", "GREY^MEREDITH", "QUINN^MICHAELA", "KILDARE^JAMES", "",
)  # fmt: skip
MANUFACTURERS = {
    "CT": ("SIEMENS", "GE MEDICAL SYSTEMS", "Philips", "TOSHIBA"),
    "MR": ("SIEMENS", "GE MEDICAL SYSTEMS", "Philips Medical Systems"),
}


@dataclass(slots=True)
class StudyCounter:
    """Running study index and accession base, shared across patients."""

    index: int
    accession_base: int

    def next(self) -> tuple[int, str]:
        """The next study index and its accession number."""
        i = self.index
        self.index += 1
        return i, f"A{self.accession_base + i:08d}"


def _date_time(rng: random.Random, patient: PatientSpec) -> tuple[str, str]:
    year = rng.randint(max(2010, int(patient.birth_date[:4]) + 1), 2024)
    date = f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    time = f"{rng.randint(7, 19):02d}{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}"
    return date, time


def _series(seed: int, study_index: int, number: int, count: int) -> tuple[str, tuple[str, ...]]:
    uid = derive_uid(seed, "series", study_index, number)
    sops = tuple(derive_uid(seed, "sop", study_index, number, k) for k in range(count))
    return uid, sops


def make_study(
    rng: random.Random, seed: int, patient: PatientSpec, counter: StudyCounter
) -> StudySpec:
    """One CT or MR study of 1-3 series with 2-8 instances each."""
    index, accession = counter.next()
    template = rng.choice(TEMPLATES)
    date, time = _date_time(rng, patient)
    available = len(template.series)
    picked = sorted(rng.sample(range(available), rng.randint(1, min(3, available))))
    series = []
    sop_class = CT_IMAGE if template.modality == "CT" else MR_IMAGE
    for i in picked:
        t = template.series[i]
        uid, sops = _series(seed, index, i + 2, rng.randint(2, 8))
        series.append(
            SeriesSpec(
                series_uid=uid,
                modality=template.modality,
                number=i + 2,
                description=t.description,
                sop_class_uid=sop_class,
                instance_uids=sops,
                rows=t.size,
                columns=t.size,
                pixel_spacing=round(template.fov_mm / t.size, 4),
                slice_thickness=t.thickness,
                orientation=t.orientation,
            )
        )
    return StudySpec(
        study_uid=derive_uid(seed, "study", index),
        patient=patient,
        study_id=str(rng.randint(1, 99999)),
        date=date,
        time=time,
        accession=accession,
        description=template.description,
        alt_descriptions=template.alternates,
        body_part=template.body_part,
        referring=rng.choice(REFERRING),
        manufacturer=rng.choice(MANUFACTURERS[template.modality]),
        frame_uid=derive_uid(seed, "frame", index),
        series=series,
    )


def make_rt_study(
    rng: random.Random, seed: int, patient: PatientSpec, counter: StudyCounter
) -> StudySpec:
    """A planning CT of the analytic phantom with its RT Structure Set."""
    index, accession = counter.next()
    grid = Grid()
    date, time = _date_time(rng, patient)
    ct_uid, ct_sops = _series(seed, index, 2, grid.slices)
    rt_uid, rt_sops = _series(seed, index, 1000, 1)
    ct = SeriesSpec(
        series_uid=ct_uid,
        modality="CT",
        number=2,
        description="Planning CT 2.5 mm",
        sop_class_uid=CT_IMAGE,
        instance_uids=ct_sops,
        rows=grid.rows,
        columns=grid.columns,
        pixel_spacing=grid.spacing,
        slice_thickness=grid.thickness,
        orientation=AXIAL,
        phantom=True,
    )
    rt = SeriesSpec(rt_uid, "RTSTRUCT", 1000, "Structure Set", RT_STRUCTURE_SET, rt_sops)
    return StudySpec(
        study_uid=derive_uid(seed, "study", index),
        patient=patient,
        study_id=str(rng.randint(1, 99999)),
        date=date,
        time=time,
        accession=accession,
        description="RT PLANNING CT",
        alt_descriptions=("CT RT PLANNING",),
        body_part="CHEST",
        referring=rng.choice(REFERRING),
        manufacturer="SIEMENS",
        frame_uid=derive_uid(seed, "frame", index),
        series=[ct, rt],
        rt=RtSpec(grid, phantom_shapes(), ct_uid, rt_uid, rt_sops[0]),
    )


def make_studies(
    rng: random.Random, seed: int, patient: PatientSpec, counter: StudyCounter, rt: bool = False
) -> list[StudySpec]:
    """A patient's studies (1-3), preceded by the RT planning study when `rt`."""
    studies = [make_rt_study(rng, seed, patient, counter)] if rt else []
    count = rng.choices((1, 2, 3), weights=(50, 35, 15))[0]
    studies.extend(make_study(rng, seed, patient, counter) for _ in range(count))
    return studies
