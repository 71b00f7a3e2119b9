"""Small synthetic pixel data: an elliptic body with an inner structure that moves per slice.

Stored values are unsigned 16-bit with 12 bits used; CT values are HU + 1024.
Frames depend only on (modality, size, slice, slice count), so they are cached.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from gateway.devstack.seed.rtstruct import Grid, Shape, phantom_hu

CT_INTERCEPT = -1024


@lru_cache(maxsize=512)
def frame(modality: str, rows: int, columns: int, index: int, count: int) -> bytes:
    """Little-endian uint16 pixel bytes of slice `index` out of `count`."""
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : columns * 1j]
    t = (index + 0.5) / count  # 0..1 through the stack
    body = (x / 0.9) ** 2 + (y / 0.75) ** 2 <= 1
    inner = (x - 0.3 * (t - 0.5)) ** 2 + (y + 0.1) ** 2 <= (0.15 + 0.25 * np.sin(np.pi * t)) ** 2
    rng = np.random.default_rng([rows, columns, index, count, len(modality)])
    noise = rng.normal(0, 8, x.shape)
    if modality == "CT":
        values = np.where(body, 1024 + 40, 24) + np.where(inner, 300, 0) + noise
    else:
        values = np.where(body, 400, 10) + np.where(inner, 500, 0) + noise * 2
    return np.clip(values, 0, 4095).astype("<u2").tobytes()


def phantom_frame(grid: Grid, shapes: tuple[Shape, ...], index: int) -> bytes:
    """Pixel bytes of slice `index` of the RT phantom (HU + 1024)."""
    hu = phantom_hu(grid, shapes, index).astype(np.int32) - CT_INTERCEPT
    return np.clip(hu, 0, 4095).astype("<u2").tobytes()
