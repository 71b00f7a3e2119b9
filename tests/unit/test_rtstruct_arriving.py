"""Reading an image series while it is written (`workers.dicom.rtstruct.arriving`), and the
RT-STRUCT job's side of it: files written whole, the marker written however it ends."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from tests.unit.test_rtstruct_builders import ct_series, rtstruct, sphere
from workers.dicom.rtstruct import (
    MARKER,
    PARTIAL_SUFFIX,
    RtStructError,
    image_name,
    marker_text,
    read_arriving,
)
from workers.dicom.rtstruct.grid import build_stack
from workers.dicom.rtstruct.pipeline import process_arriving, process_files
from workers.jobs import rtstruct as job


def _bytes(ds: Dataset) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _put(folder: Path, index: int, data: bytes) -> None:
    partial = folder / (image_name(index) + PARTIAL_SUFFIX)
    partial.write_bytes(data)
    partial.rename(folder / image_name(index))


def _writer(
    folder: Path, files: Sequence[bytes], delay: float, count: int | None = None
) -> threading.Thread:
    """A thread writing `files` one by one, `delay` s apart, then the marker (`count`)."""

    def write() -> None:
        for i, data in enumerate(files):
            time.sleep(delay)
            _put(folder, i, data)
        (folder / MARKER).write_text(marker_text(len(files) if count is None else count, True))

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _ct(n: int = 6) -> list[Dataset]:
    return ct_series(rows=16, columns=20, offsets=[(k - n / 2) * 2.5 for k in range(n)])


def test_reads_files_in_order_as_they_appear(tmp_path: Path) -> None:
    ct = _ct(6)
    random.Random(1).shuffle(ct)  # arrival order is not slice order
    writer = _writer(tmp_path, [_bytes(ds) for ds in ct], delay=0.03)
    start = time.monotonic()
    arrived = read_arriving(tmp_path, expected=4, stall_s=5)  # fewer expected: the volume grows
    writer.join()
    assert time.monotonic() - start >= 6 * 0.03
    assert [str(d.SOPInstanceUID) for d in arrived.datasets] == [str(d.SOPInstanceUID) for d in ct]
    assert arrived.pixels is not None and arrived.pixels.shape == (6, 16, 20)
    for ds, pixels in zip(ct, arrived.pixels, strict=True):
        assert pixels.tobytes() == ds.PixelData
    # build_stack takes the decoded pixels, in slice order, as decoding them anew would
    expected = build_stack(ct)  # the datasets read carry no pixel data: `pixels` holds it
    stack = build_stack(arrived.datasets, decoded=arrived.pixels)
    assert stack.raw is not None and expected.raw is not None
    assert np.array_equal(stack.raw, expected.raw)
    assert stack.grid.sop_uids == expected.grid.sop_uids


def test_the_marker_ends_it_with_fewer_files(tmp_path: Path) -> None:
    ct = _ct(5)
    writer = _writer(tmp_path, [_bytes(ds) for ds in ct[:3]], delay=0.01)
    arrived = read_arriving(tmp_path, expected=5, stall_s=5)
    writer.join()
    assert len(arrived.datasets) == 3
    assert arrived.pixels is not None and arrived.pixels.shape == (3, 16, 20)


def test_the_marker_stops_at_its_count(tmp_path: Path) -> None:
    ct = _ct(3)
    for i, ds in enumerate(ct):
        _put(tmp_path, i, _bytes(ds))
    (tmp_path / MARKER).write_text(marker_text(2, True))
    assert len(read_arriving(tmp_path, stall_s=1).datasets) == 2


def test_an_incomplete_download_ends_it(tmp_path: Path) -> None:
    _put(tmp_path, 0, _bytes(_ct(1)[0]))
    (tmp_path / MARKER).write_text(marker_text(1, False))
    with pytest.raises(RtStructError, match="ended early after 1 images"):
        read_arriving(tmp_path, stall_s=5)


def test_a_stall_raises_quickly(tmp_path: Path) -> None:
    _put(tmp_path, 0, _bytes(_ct(1)[0]))
    start = time.monotonic()
    with pytest.raises(RtStructError, match=r"no image arrived for 0\.2 s.*image 2"):
        read_arriving(tmp_path, stall_s=0.2)
    assert time.monotonic() - start < 2


def test_a_half_written_file_is_never_read(tmp_path: Path) -> None:
    [original] = _ct(1)
    data = _bytes(original)
    partial = tmp_path / (image_name(0) + PARTIAL_SUFFIX)
    partial.write_bytes(data[: len(data) // 2])  # the writer is still at it
    with pytest.raises(RtStructError, match="no image arrived"):
        read_arriving(tmp_path, stall_s=0.2)

    def finish() -> None:
        time.sleep(0.1)
        partial.write_bytes(data)
        partial.rename(tmp_path / image_name(0))
        (tmp_path / MARKER).write_text(marker_text(1, True))

    threading.Thread(target=finish, daemon=True).start()
    arrived = read_arriving(tmp_path, stall_s=5)
    [ds] = arrived.datasets
    assert ds.SOPInstanceUID == original.SOPInstanceUID
    assert arrived.pixels is not None and arrived.pixels.tobytes() == original.PixelData


def test_a_removed_folder_ends_it(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()

    def remove() -> None:
        time.sleep(0.05)
        folder.rmdir()

    threading.Thread(target=remove, daemon=True).start()
    with pytest.raises(RtStructError, match="removed"):
        read_arriving(folder, stall_s=5)


def test_process_arriving_is_process_files(tmp_path: Path) -> None:
    ct = ct_series(rows=48, columns=56, spacing=(2.0, 2.5))
    rs = rtstruct(ct, [("s", sphere(ct, (3.0, -4.0, 1.0), 18.0))])
    rs_path = tmp_path / "rs.dcm"
    rs.save_as(rs_path, enforce_file_format=True)
    paths = []
    for i, ds in enumerate(ct):
        paths.append(tmp_path / f"ct{i}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    files = process_files(rs_path, paths)
    folder = tmp_path / "arriving"
    folder.mkdir()
    shuffled = list(ct)
    random.Random(2).shuffle(shuffled)
    writer = _writer(folder, [_bytes(ds) for ds in shuffled], delay=0.002)
    arriving = process_arriving(rs_path, folder, expected=len(ct))
    writer.join()
    assert arriving["rois"] == files["rois"]
    assert arriving["warnings"] == files["warnings"]


class _Source:
    """Enough of a PacsSource for `_download`: yields `files`, then fails or waits."""

    def __init__(self, files: Sequence[bytes], then: str = "end") -> None:
        self.files, self.then = files, then

    async def retrieve_study(self, study: str, series: Sequence[str]) -> AsyncIterator[bytes]:
        for data in self.files:
            await asyncio.sleep(0.005)
            yield data
        if self.then == "fail":
            raise ConnectionError("archive went away")
        if self.then == "hang":
            await asyncio.sleep(3600)


async def test_the_download_writes_whole_files_and_the_marker(tmp_path: Path) -> None:
    files = [_bytes(ds) for ds in _ct(4)]
    counts: list[int] = []

    async def arrived(count: int) -> None:
        counts.append(count)

    reader = asyncio.create_task(asyncio.to_thread(read_arriving, tmp_path, 4, 5.0))
    paths = await job._download(_Source(files), "1.2", "1.2.3", tmp_path, arrived)  # type: ignore[arg-type]
    assert [p.name for p in paths] == [image_name(i) for i in range(4)]
    assert counts == [1, 2, 3, 4]
    assert (tmp_path / MARKER).read_text() == marker_text(4, True)
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*" + PARTIAL_SUFFIX)))
    assert len((await reader).datasets) == 4


async def test_a_failed_download_still_writes_the_marker(tmp_path: Path) -> None:
    files = [_bytes(ds) for ds in _ct(2)]
    reader = asyncio.create_task(asyncio.to_thread(read_arriving, tmp_path, 4, 30.0))
    with pytest.raises(ConnectionError):
        await job._download(_Source(files, "fail"), "1.2", "1.2.3", tmp_path)  # type: ignore[arg-type]
    assert (tmp_path / MARKER).read_text() == marker_text(2, False)
    start = time.monotonic()
    with pytest.raises(RtStructError, match="ended early after 2 images"):
        await reader
    assert time.monotonic() - start < 2  # the reader did not wait for its stall bound


async def test_a_cancelled_download_still_writes_the_marker(tmp_path: Path) -> None:
    files = [_bytes(ds) for ds in _ct(2)]
    reader = asyncio.create_task(asyncio.to_thread(read_arriving, tmp_path, 4, 30.0))
    both = asyncio.Event()

    async def arrived(count: int) -> None:
        if count == 2:
            both.set()

    download = asyncio.create_task(
        job._download(_Source(files, "hang"), "1.2", "1.2.3", tmp_path, arrived)  # type: ignore[arg-type]
    )
    await both.wait()
    download.cancel()
    with pytest.raises(asyncio.CancelledError):
        await download
    assert (tmp_path / MARKER).read_text() == marker_text(2, False)
    with pytest.raises(RtStructError, match="ended early"):
        await asyncio.wait_for(reader, 2)


def test_large_display_meshes_get_fewer_smoothing_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the reader: the display mesh of a very large ROI (a body contour), cheaper."""
    from vtkmodules.util.numpy_support import vtk_to_numpy

    from workers.dicom.rtstruct import parse_structure_set, surface
    from workers.dicom.rtstruct.raster import rasterize

    ct = ct_series(rows=48, columns=56, spacing=(2.0, 2.5))
    stack = build_stack(ct, pixels=False)
    rs = rtstruct(ct, [("s", sphere(ct, (3.0, -4.0, 1.0), 18.0))])
    [roi] = parse_structure_set(rs).rois
    iso = surface.iso_surface(rasterize(roi, stack.grid), stack.grid)
    area = surface.area_mm2(iso.mesh)

    def points(mesh: object) -> np.ndarray:
        return vtk_to_numpy(mesh.GetPoints().GetData())  # type: ignore[attr-defined]

    full = points(surface.smoothed(iso.mesh))
    monkeypatch.setattr(surface, "LARGE_MESH_TRIANGLES", 10)  # this small mesh counts as large
    fewer = points(surface.smoothed(iso.mesh))
    assert np.array_equal(
        fewer, points(surface.smoothed(iso.mesh, iterations=surface.LARGE_MESH_ITERATIONS))
    )
    assert not np.array_equal(fewer, full)
    assert np.abs(fewer - full).max() < 1.0  # mm: a display difference
    assert surface.area_mm2(iso.mesh) == area  # the measured surface is not the smoothed one


def test_implicit_vr_and_mixed_types(tmp_path: Path) -> None:
    from pydicom.uid import ImplicitVRLittleEndian

    ct = _ct(3)
    for ds in ct:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    for i, ds in enumerate(ct):
        _put(tmp_path, i, _bytes(ds))
    (tmp_path / MARKER).write_text(marker_text(3, True))
    arrived = read_arriving(tmp_path, stall_s=1)
    assert arrived.pixels is not None
    assert [p.tobytes() for p in arrived.pixels] == [ds.PixelData for ds in ct]
    # slices of differing types: no volume, the datasets keep their pixels for build_stack
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    ct[1].PixelRepresentation = 1
    for i, ds in enumerate(ct):
        _put(mixed, i, _bytes(ds))
    (mixed / MARKER).write_text(marker_text(3, True))
    arrived = read_arriving(mixed, stall_s=1)
    assert arrived.pixels is None and all("PixelData" in ds for ds in arrived.datasets)
    assert build_stack(arrived.datasets, decoded=arrived.pixels).raw is not None
