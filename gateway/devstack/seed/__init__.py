"""Deterministic demo data: synthetic patients and studies spread over several archives.

plan = build_demo(seed=42, patients=20)
plan.truth.to_json()            # what every archive holds
for data in plan.iter_files("orthanc"): ...   # Part 10 bytes, generated lazily
await load_demo(plan, sources)  # store through the PacsSource adapters
"""

from gateway.devstack.seed.loader import SeedLoadError, load_demo, write_files
from gateway.devstack.seed.plan import DEFAULT_SOURCES, DemoPlan, build_demo
from gateway.devstack.seed.truth import (
    GroundTruth,
    PatientTruth,
    RoiTruth,
    RtStructTruth,
    SeriesTruth,
    StudyTruth,
    read_truth,
    write_truth,
)

__all__ = [
    "DEFAULT_SOURCES",
    "DemoPlan",
    "GroundTruth",
    "PatientTruth",
    "RoiTruth",
    "RtStructTruth",
    "SeedLoadError",
    "SeriesTruth",
    "StudyTruth",
    "build_demo",
    "load_demo",
    "read_truth",
    "write_files",
    "write_truth",
]
