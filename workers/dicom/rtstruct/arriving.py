"""Reading an image series from a folder while another process is still writing it.

The writer (the job, downloading from an archive) names the files `00000.dcm`,
`00001.dcm`, ... in the order they arrive, writes each under a temporary name
(`*.part`) and renames it when complete, so a reader never sees half a file; when
the download ends, normally or not, it writes the marker file `COUNT`: the number
of images written, followed by ` incomplete` when the download did not finish.

The reader parses each file (PS3.10 Part 10) as it appears and decodes its pixel
data (PS3.5 8, C.7.6.3 Image Pixel Module) into one volume, in arrival order, so
that the parse of a series overlaps its download and `build_stack` finds the
pixels decoded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from workers.dicom.rtstruct.grid import decoded_pixels, native_dtype
from workers.dicom.rtstruct.model import RtStructError

MARKER = "COUNT"  # written last: "<images written>" or "<images written> incomplete"
PARTIAL_SUFFIX = ".part"  # files being written: never read
INCOMPLETE = "incomplete"
STALL_S = 60.0  # no new file and no marker for this long: the writer is gone
POLL_S = 0.002


def image_name(index: int) -> str:
    """The final name of the `index`-th image (from 0) of a series folder."""
    return f"{index:05d}.dcm"


def write_whole(path: Path, data: bytes) -> Path:
    """Write `data` under a temporary name, then rename: a reader never sees half a file."""
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    partial.write_bytes(data)
    os.replace(partial, path)
    return path


def marker_text(count: int, complete: bool) -> str:
    """What the writer puts in the marker file."""
    return f"{count}\n" if complete else f"{count} {INCOMPLETE}\n"


def read_marker(folder: Path) -> tuple[int, bool] | None:
    """(images written, download complete) once the marker is there, else None."""
    try:
        parts = (folder / MARKER).read_text(encoding="ascii").split()
    except OSError:
        return None
    if not parts or not parts[0].isdigit():
        return None  # not written yet (it is written whole, but be safe)
    return int(parts[0]), INCOMPLETE not in parts[1:]


@dataclass(slots=True)
class Arrived:
    """The datasets read, in arrival order, and their decoded pixels: `pixels[i]` holds
    the stored values of `datasets[i]` (native data is read into `pixels` only, not into
    the datasets). `pixels` is None when the slices differ in size or type: then the
    datasets hold their pixel data, for `build_stack` to decode."""

    datasets: list[Dataset]
    pixels: NDArray[np.generic] | None


class _Volume:
    """Slices written into one growing array as they are read."""

    def __init__(self, expected: int) -> None:
        self.expected = max(1, expected)
        self.array: NDArray[np.generic] | None = None
        self.count = 0
        self.failed = False

    def slot(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> NDArray[np.generic] | None:
        """The next slice's place (None once the slices differ in size or type)."""
        if self.failed:
            return None
        if self.array is None:
            self.array = np.empty((self.expected, *shape), dtype=dtype)
        elif shape != self.array.shape[1:] or dtype != self.array.dtype:
            self.failed = True
            return None
        if self.count == len(self.array):  # more than expected: grow
            grown = np.empty((2 * len(self.array), *self.array.shape[1:]), self.array.dtype)
            grown[: self.count] = self.array
            self.array = grown
        return self.array[self.count]

    def add(self, slice_: NDArray[np.generic] | None) -> None:
        """Copy a decoded slice in (None: it could not be decoded here)."""
        place = None if slice_ is None else self.slot(slice_.shape, slice_.dtype)
        if place is None or slice_ is None:
            self.failed = True
            return
        place[...] = slice_
        self.count += 1

    def result(self) -> NDArray[np.generic] | None:
        if self.failed or self.array is None:
            return None
        return self.array[: self.count]


PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian


def _read_into(path: Path, volume: _Volume) -> Dataset | None:
    """Native 16-bit data (PS3.5 A.1-A.2, 7.1.2): the attributes parsed, the pixel data
    read from the file straight into the volume (no copy, no decoding); None when the
    file is not so (then `_read`)."""
    with path.open("rb") as f:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        dtype = native_dtype(ds)
        if dtype is None or "Rows" not in ds or "Columns" not in ds:
            return None
        explicit = str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.1"
        head = f.read(12 if explicit else 8)
        length = int.from_bytes(head[-4:], "little")
        rows, columns = int(ds.Rows), int(ds.Columns)
        if head[:4] != PIXEL_DATA_TAG or length == 0xFFFFFFFF or length < 2 * rows * columns:
            return None
        if explicit and head[4:6] not in (b"OW", b"OB"):
            return None
        place = volume.slot((rows, columns), np.dtype(dtype))
        if place is None:
            return None
        if f.readinto(place.data.cast("B")) != place.nbytes:
            return None
    volume.count += 1
    return ds


def _read(path: Path, volume: _Volume) -> Dataset:
    """One image, its pixels into `volume` (decoded here when they can be: else
    `build_stack` decodes them, and raises what it raised without this reader)."""
    try:
        fast = _read_into(path, volume)
        if fast is not None:
            return fast
        ds = pydicom.dcmread(path)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise RtStructError(f"unreadable DICOM file ({type(exc).__name__})") from exc
    try:
        volume.add(decoded_pixels(ds))
    except Exception:  # left to build_stack, which raises what it raises
        volume.add(None)
    return ds


def _arrived(folder: Path, datasets: list[Dataset], volume: _Volume) -> Arrived:
    pixels = volume.result()
    if pixels is None:  # slices of differing types: each is decoded by build_stack, whole
        for n, ds in enumerate(datasets):
            if "PixelData" not in ds:
                datasets[n] = pydicom.dcmread(folder / image_name(n))
    return Arrived(datasets, pixels)


def read_arriving(
    folder: str | Path,
    expected: int = 0,
    stall_s: float = STALL_S,
    poll_s: float = POLL_S,
) -> Arrived:
    """Every image of `folder`, read in order as each appears, until the marker's count.

    `expected` (the number of images the archive said it holds) sizes the pixel volume.
    Raises RtStructError when the download ended incomplete, when a counted file is
    missing, when the folder goes away, or when nothing arrives for `stall_s` seconds.
    """
    folder = Path(folder)
    datasets: list[Dataset] = []
    volume = _Volume(expected)
    marker: tuple[int, bool] | None = None
    last = time.monotonic()
    while True:
        if marker is None:  # once there, it is final
            marker = read_marker(folder)
        if marker is not None:
            count, complete = marker
            if not complete:
                raise RtStructError(f"the image download ended early after {count} images")
            if len(datasets) >= count:
                return _arrived(folder, datasets, volume)
        path = folder / image_name(len(datasets))
        if os.path.exists(path):
            datasets.append(_read(path, volume))
            last = time.monotonic()
        elif marker is not None:  # files are renamed before the marker is written
            raise RtStructError(f"image {len(datasets) + 1} of {marker[0]} is missing")
        elif not folder.is_dir():
            raise RtStructError("the image folder was removed while reading it")
        elif time.monotonic() - last > stall_s:
            raise RtStructError(
                f"no image arrived for {stall_s:g} s (waiting for image "
                f"{len(datasets) + 1}): the download stalled"
            )
        else:
            time.sleep(poll_s)
