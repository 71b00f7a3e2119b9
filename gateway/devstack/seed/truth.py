"""Ground truth: what every archive holds after seeding, as JSON-serialisable dataclasses.

Per-source maps are keyed by source id. `conflicts` maps a DICOM keyword
("PatientName", "StudyDescription") to the value each holding source has, and
lists only studies whose copies disagree. Geometry is in mm, volumes in cm³,
surfaces in cm².
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class PatientTruth:
    """A patient and the name each source holds for them."""

    patient_id: str
    name: str
    birth_date: str
    sex: str
    specific_character_set: str | None
    names: dict[str, str]
    sources: list[str]
    study_uids: list[str]


@dataclass(slots=True)
class SeriesTruth:
    """A series with its full list of instances (before any archive lost some)."""

    series_uid: str
    modality: str
    series_number: int
    description: str
    sop_class_uid: str
    rows: int
    columns: int
    instance_uids: list[str]


@dataclass(slots=True)
class StudyTruth:
    """A study, where it lives, what each copy holds and where copies disagree."""

    study_uid: str
    patient_id: str
    study_date: str
    study_time: str
    accession_number: str
    description: str
    modalities: list[str]
    sources: list[str]
    series_counts: dict[str, int]
    instance_counts: dict[str, int]
    series: list[SeriesTruth]
    instances: dict[str, dict[str, list[str]]]  # source -> series UID -> SOP Instance UIDs
    missing: dict[str, list[str]]  # source -> SOP Instance UIDs it lacks
    conflicts: dict[str, dict[str, str]]  # keyword -> source -> value


@dataclass(slots=True)
class RoiTruth:
    """One ROI of the phantom with its analytic measures."""

    number: int
    name: str
    shape: str  # "sphere" | "box"
    center_mm: list[float]
    radius_mm: float | None
    size_mm: list[float] | None
    volume_cm3: float
    surface_cm2: float
    contour_volume_cm3: float  # Σ polygon area × slice thickness of the stored contours
    contours: int
    interpreted_type: str
    color: list[int]


@dataclass(slots=True)
class RtStructTruth:
    """The RT phantom: CT grid, structure set UIDs and its ROIs."""

    patient_id: str
    study_uid: str
    sources: list[str]
    frame_of_reference_uid: str
    ct_series_uid: str
    ct_instance_uids: list[str]  # ordered by slice, inferior first
    rtstruct_series_uid: str
    rtstruct_instance_uid: str
    rows: int
    columns: int
    pixel_spacing_mm: float
    slice_thickness_mm: float
    first_position_mm: list[float]
    slice_z_mm: list[float]
    rois: list[RoiTruth]


@dataclass(slots=True)
class GroundTruth:
    """Everything the seeder put where."""

    seed: int
    sources: list[str]
    instance_counts: dict[str, int]
    patients: list[PatientTruth] = field(default_factory=list)
    studies: list[StudyTruth] = field(default_factory=list)
    rtstructs: list[RtStructTruth] = field(default_factory=list)

    def to_json(self) -> str:
        """The truth as a JSON document (UTF-8 text, non-ASCII kept)."""
        return json.dumps(asdict(self), ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> GroundTruth:
        """Parse a document written by `to_json`."""
        data = json.loads(text)
        return cls(
            seed=data["seed"],
            sources=data["sources"],
            instance_counts=data["instance_counts"],
            patients=[PatientTruth(**p) for p in data["patients"]],
            studies=[_study(s) for s in data["studies"]],
            rtstructs=[_rtstruct(r) for r in data["rtstructs"]],
        )

    def study(self, study_uid: str) -> StudyTruth:
        """The study with this UID; `KeyError` when unknown."""
        for s in self.studies:
            if s.study_uid == study_uid:
                return s
        raise KeyError(study_uid)

    def patient(self, patient_id: str) -> PatientTruth:
        """The patient with this id; `KeyError` when unknown."""
        for p in self.patients:
            if p.patient_id == patient_id:
                return p
        raise KeyError("unknown patient id")


def _study(data: dict[str, Any]) -> StudyTruth:
    return StudyTruth(**{**data, "series": [SeriesTruth(**s) for s in data["series"]]})


def _rtstruct(data: dict[str, Any]) -> RtStructTruth:
    return RtStructTruth(**{**data, "rois": [RoiTruth(**r) for r in data["rois"]]})


def write_truth(truth: GroundTruth, path: str | Path) -> Path:
    """Write `truth.json`; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(truth.to_json(), encoding="utf-8")
    return target


def read_truth(path: str | Path) -> GroundTruth:
    """Read a file written by `write_truth`."""
    return GroundTruth.from_json(Path(path).read_text(encoding="utf-8"))
