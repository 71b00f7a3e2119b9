"""Full-grid RT-STRUCT masks, made from bounding-box masks when first downloaded.

A job writes each ROI's mask over its bounding box (small and fast) and the image grid's
geometry beside them (`grid.json`); `<mask>.full.nii.gz`, the same mask over the whole
CT grid (what viewers that need the CT's exact grid load), is written on its first
download and served from the file after that.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from workers.dicom.rtstruct import FULL_GRID, GRID_FILE

_making: dict[Path, asyncio.Lock] = {}


async def ensure(path: Path) -> None:
    """Write `path`, a full-grid mask, from its bounding-box mask if it is not there yet;
    nothing when it is not such a name or its sources are missing."""
    if not path.name.endswith(FULL_GRID):
        return
    lock = _making.setdefault(path, asyncio.Lock())
    try:
        async with lock:  # two first downloads at once: one writes, the other waits
            await asyncio.to_thread(_write, path)
    finally:
        if not lock.locked():
            _making.pop(path, None)


def _write(out: Path) -> None:
    cropped = out.with_name(out.name.removesuffix(FULL_GRID) + ".nii.gz")
    grid = out.with_name(GRID_FILE)
    if out.exists() or not (cropped.is_file() and grid.is_file()):
        return
    from workers.dicom.rtstruct.export import uncrop  # SimpleITK loads on first use

    uncrop(cropped, json.loads(grid.read_text("utf-8")), out)
