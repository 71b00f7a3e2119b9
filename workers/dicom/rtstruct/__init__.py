"""RT-STRUCT engine: structure sets to masks, measures and NIfTI/STL/JSON exports.

Pure code (datasets and arrays in, arrays and measures out); only `export`
writes files, into a directory it is given. See `pipeline.process`.

The pipeline (SimpleITK, VTK, OpenCV) is imported on first use, so that
importing the job registry (the gateway validating inputs) stays light.
"""

from typing import TYPE_CHECKING, Any

from workers.dicom.rtstruct.arriving import (
    MARKER,
    PARTIAL_SUFFIX,
    Arrived,
    image_name,
    marker_text,
    read_arriving,
    write_whole,
)
from workers.dicom.rtstruct.model import (
    FULL_GRID,
    GRID_FILE,
    RoiResult,
    RtStructError,
    StructureSet,
    full_grid_name,
)
from workers.dicom.rtstruct.parse import parse_structure_set

if TYPE_CHECKING:
    from workers.dicom.rtstruct.pipeline import (
        Outcome,
        process,
        process_arriving,
        process_files,
        read_steps,
    )

__all__ = [
    "FULL_GRID",
    "GRID_FILE",
    "MARKER",
    "PARTIAL_SUFFIX",
    "Arrived",
    "Outcome",
    "RoiResult",
    "RtStructError",
    "StructureSet",
    "full_grid_name",
    "image_name",
    "marker_text",
    "parse_structure_set",
    "process",
    "process_arriving",
    "process_files",
    "read_arriving",
    "read_steps",
    "write_whole",
]
_PIPELINE = ("Outcome", "process", "process_arriving", "process_files", "read_steps")


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        from workers.dicom.rtstruct import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
