"""`rtStructResults`: the recorded outcome of every finished RTSTRUCT job of a study."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy import select, true

from gateway.core.enums import JobKind, JobStatus
from gateway.db.models import Job as JobRow
from gateway.jobs.store import JobStore
from resolvers.job_types import Roi, RtStructResult


async def rtstruct_results(
    store: JobStore, study_uid: str, owner: str | None = None
) -> list[RtStructResult]:
    """Newest first; one entry per structure set a job processed (of `owner`'s jobs only,
    when given)."""
    async with store.sessions() as session:
        rows = await session.scalars(
            select(JobRow)
            .where(
                JobRow.kind == JobKind.RTSTRUCT,
                JobRow.status == JobStatus.SUCCEEDED,
                JobRow.input["studyInstanceUid"].as_string() == study_uid,
            )
            .where(JobRow.owner == owner if owner is not None else true())
            .order_by(JobRow.finished_at.desc())
        )
        jobs = list(rows)
    out: list[RtStructResult] = []
    for job in jobs:
        result = job.result or {}
        for part in result.get("structureSets") or [result]:
            out.append(_result(job.id, study_uid, part))
    return out


def _result(job_id: str, study_uid: str, data: dict[str, Any]) -> RtStructResult:
    return RtStructResult(
        job_id=strawberry.ID(job_id),
        study_instance_uid=data.get("studyInstanceUid") or study_uid,
        series_instance_uid=data.get("seriesInstanceUid") or "",
        referenced_series_instance_uid=data.get("referencedSeriesInstanceUid"),
        rois=[_roi(r) for r in data.get("rois") or []],
        processing_seconds=float(data.get("processingSeconds") or 0.0),
        summary_url=data.get("summaryUrl"),
        warnings=[str(w) for w in data.get("warnings") or []],
    )


def _roi(r: dict[str, Any]) -> Roi:
    def num(key: str) -> float | None:
        value = r.get(key)
        return float(value) if value is not None else None

    return Roi(
        number=int(r.get("number") or 0),
        name=str(r.get("name") or ""),
        volume_cc=float(r.get("volumeCc") or 0.0),
        surface_cm2=float(r.get("surfaceCm2") or 0.0),
        centroid_mm=[float(x) for x in r.get("centroidMm") or []],
        slice_count=int(r.get("sliceCount") or 0),
        mask_url=r.get("maskUrl"),
        mesh_url=r.get("meshUrl"),
        full_grid_mask_url=r.get("fullGridMaskUrl"),
        planimetric_volume_cc=num("planimetricVolumeCc"),
        volume_mismatch=r.get("volumeMismatch"),
        mean_value=num("meanValue"),
        min_value=num("minValue"),
        max_value=num("maxValue"),
    )
