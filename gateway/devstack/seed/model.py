"""The in-memory plan: patients, studies, series and where each copy lives.

Only UIDs and attributes are kept; file bytes are generated on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.devstack.seed.rtstruct import Grid, Shape

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"


@dataclass(slots=True)
class PatientSpec:
    """One patient; `alt_names` holds the misspelled name some archive keeps."""

    patient_id: str
    name: str
    birth_date: str
    sex: str
    alt_names: dict[str, str] = field(default_factory=dict)
    misspell_hint: str | None = None  # curated: the source role that misspells the name


@dataclass(slots=True)
class SeriesSpec:
    """One series with its full (canonical) list of instances."""

    series_uid: str
    modality: str
    number: int
    description: str
    sop_class_uid: str
    instance_uids: tuple[str, ...]
    rows: int = 0
    columns: int = 0
    pixel_spacing: float = 1.0
    slice_thickness: float = 1.0
    orientation: tuple[float, ...] = AXIAL
    phantom: bool = False  # pixels drawn from the study's RT phantom


@dataclass(slots=True)
class CopySpec:
    """One archive's copy of a study: instances it lacks and attributes it spells differently."""

    missing: set[str] = field(default_factory=set)
    overrides: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RtSpec:
    """The RT phantom of a planning study: CT grid, shapes and the structure set."""

    grid: Grid
    shapes: tuple[Shape, ...]
    ct_series_uid: str
    rtstruct_series_uid: str
    rtstruct_uid: str
    label: str = "PHANTOM"


@dataclass(slots=True)
class StudySpec:
    """One study and the copies the archives hold, by source id."""

    study_uid: str
    patient: PatientSpec
    study_id: str
    date: str
    time: str
    accession: str
    description: str
    alt_descriptions: tuple[str, ...]
    body_part: str
    referring: str
    manufacturer: str
    frame_uid: str
    series: list[SeriesSpec]
    copies: dict[str, CopySpec] = field(default_factory=dict)
    rt: RtSpec | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities in the study, sorted."""
        return tuple(sorted({s.modality for s in self.series}))

    def held_instances(self, source_id: str) -> dict[str, list[str]]:
        """Series UID -> SOP Instance UIDs that `source_id` holds (empty series left out)."""
        copy = self.copies.get(source_id)
        if copy is None:
            return {}
        held = {}
        for s in self.series:
            uids = [u for u in s.instance_uids if u not in copy.missing]
            if uids:
                held[s.series_uid] = uids
        return held
