"""Plain records of the RT-STRUCT engine: contours, ROIs, the structure set and results.

Coordinates are DICOM patient coordinates in mm (LPS, PS3.3 C.7.6.2.1.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

CLOSED_PLANAR = "CLOSED_PLANAR"


class RtStructError(Exception):
    """A structure set or image series the engine cannot use; the message has no patient data."""


@dataclass(frozen=True, slots=True)
class Contour:
    """One item of the Contour Sequence (PS3.3 C.8.8.6.1): a polygon in patient mm."""

    geometric_type: str
    points: NDArray[np.float64]  # (n, 3)
    image_uids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RoiDef:
    """An ROI: Structure Set ROI item joined with its ROI Contour and observation items."""

    number: int
    name: str
    frame_uid: str | None
    contours: tuple[Contour, ...]
    interpreted_type: str | None = None
    color: tuple[int, int, int] | None = None


@dataclass(frozen=True, slots=True)
class StructureSet:
    """What the engine needs of an RT Structure Set instance (PS3.3 C.8.8.5)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    frame_uids: tuple[str, ...]
    referenced_series_uids: tuple[str, ...]
    referenced_image_uids: tuple[str, ...]
    rois: tuple[RoiDef, ...]


@dataclass(slots=True)
class RoiResult:
    """Metrics of one ROI, JSON-ready (camelCase keys via `as_json`)."""

    number: int
    name: str
    volume_cc: float
    planimetric_volume_cc: float
    volume_mismatch: bool
    surface_cm2: float
    centroid_mm: list[float]
    bounding_box_mm: list[float]  # [xmin, ymin, zmin, xmax, ymax, zmax]
    slice_count: int
    mean_value: float | None
    min_value: float | None
    max_value: float | None
    voxel_volume_cc: float = 0.0  # voxel count on the image grid (what the NIfTI mask holds)
    mask_file: str | None = None
    mesh_file: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        """The result's ROI entry (file names, not URLs)."""
        return {
            "name": self.name,
            "number": self.number,
            "volumeCc": self.volume_cc,
            "planimetricVolumeCc": self.planimetric_volume_cc,
            "volumeMismatch": self.volume_mismatch,
            "voxelVolumeCc": self.voxel_volume_cc,
            "surfaceCm2": self.surface_cm2,
            "centroidMm": self.centroid_mm,
            "boundingBoxMm": self.bounding_box_mm,
            "sliceCount": self.slice_count,
            "meanValue": self.mean_value,
            "minValue": self.min_value,
            "maxValue": self.max_value,
            "maskFile": self.mask_file,
            "meshFile": self.mesh_file,
        }


GRID_FILE = "grid.json"  # the full grid's geometry, beside bounding-box masks
FULL_GRID = ".full.nii.gz"  # a bounding-box mask's full-grid twin, made when first asked for


def full_grid_name(mask_name: str) -> str:
    """The file name of a bounding-box mask's full-grid twin."""
    return mask_name.removesuffix(".nii.gz") + FULL_GRID
