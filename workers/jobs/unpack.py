"""The files of an upload, listed safely: plain files as they are, ZIPs member by member.

Nothing is extracted to disk: a member is read (decompressed) only when its bytes are
needed, bounded by its declared size (zipfile stops there and checks the CRC), so the
bounds below hold whatever the archive claims.

Refused and listed (the rest of the upload goes on):
- a member whose path leaves the upload (a `..` part, an absolute path, a drive letter,
  a NUL), or that is a symbolic link, or encrypted, or compressed with a method
  Python's zipfile cannot read;
- a member over 1 MiB compressed more than `[import] max_ratio` times (a ZIP bomb's
  signature: a few kilobytes that expand to gigabytes).

Refused as a whole (`UploadRefused`): more than `max_files` files, or more than
`max_unpacked_bytes` once uncompressed (members' declared sizes, checked before any is
read). Nested folders are fine; directory entries are skipped. A ZIP inside a ZIP is not
opened (it is listed as not DICOM).
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gateway.core.settings import ImportConfig

RATIO_FLOOR_BYTES = 1 << 20  # members smaller than this are not judged by their ratio
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)


class UploadRefused(Exception):
    """The whole upload is refused (too many files, too large once unpacked)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A file of the upload that is not imported, and why (never a value from it)."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Member:
    """One file of the upload: a spooled file, or a member of a spooled ZIP."""

    name: str  # as refusals and results show it: "upload.zip/dir/file.dcm"
    path: Path  # the spooled file
    inner: int | None = None  # the member's position in the ZIP at `path` (names may repeat)
    size: int = 0

    def read(self) -> bytes:
        """The file's bytes; `ValueError` when a ZIP member is corrupt."""
        if self.inner is None:
            return self.path.read_bytes()
        try:
            with zipfile.ZipFile(self.path) as archive:
                return archive.read(archive.infolist()[self.inner])
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
            raise ValueError("corrupt ZIP member") from exc
        except (NotImplementedError, RuntimeError) as exc:  # method, encryption
            raise ValueError("unreadable ZIP member") from exc


@dataclass
class Listing:
    """The upload's files to check, and those refused while listing."""

    members: list[Member]
    refused: list[Refusal]


def looks_zip(path: Path) -> bool:
    """True when the spooled file starts as a ZIP archive does (its bytes, not its name)."""
    try:
        with path.open("rb") as f:
            return f.read(4) in _ZIP_MAGIC
    except OSError:
        return False


def unsafe_path(name: str) -> str | None:
    """Why a member name would leave the upload when unpacked; None when it is safe."""
    if "\x00" in name:
        return "a NUL in its name"
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(text).parts:
        return "a path leaving the upload (..)"
    return None


def _zip_members(
    path: Path, shown: str, limits: ImportConfig
) -> tuple[list[Member], list[Refusal]]:
    members: list[Member] = []
    refused: list[Refusal] = []
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError):
        return [], [Refusal(shown, "a corrupt or truncated ZIP archive")]
    for position, info in enumerate(infos):
        name = f"{shown}/{info.filename}"
        if info.is_dir():
            continue
        why = unsafe_path(info.filename)
        if why is None and stat.S_ISLNK(info.external_attr >> 16):
            why = "a symbolic link"
        if why is None and info.flag_bits & 0x1:
            why = "encrypted"
        if why is None and info.compress_type not in _METHODS:
            why = "an unsupported compression method"
        if (
            why is None
            and info.file_size > RATIO_FLOOR_BYTES
            and info.file_size > limits.max_ratio * max(info.compress_size, 1)
        ):
            why = f"compressed more than {limits.max_ratio:g} times (a ZIP bomb?)"
        if why is not None:
            refused.append(Refusal(name, why))
        else:
            members.append(Member(name, path, position, info.file_size))
    return members, refused


def list_upload(parts: Sequence[tuple[Path, str]], limits: ImportConfig) -> Listing:
    """Every file of the upload (spooled files with their client names), bounds checked."""
    listing = Listing([], [])
    count = total = 0
    for path, shown in parts:
        if looks_zip(path):
            members, refused = _zip_members(path, shown, limits)
        else:
            members, refused = [Member(shown, path, None, path.stat().st_size)], []
        count += len(members) + len(refused)
        total += sum(m.size for m in members)
        if count > limits.max_files:
            raise UploadRefused(f"the upload holds more than {limits.max_files} files")
        if total > limits.max_unpacked_bytes:
            raise UploadRefused(
                f"the upload is larger than {limits.max_unpacked_bytes} bytes once unpacked"
            )
        listing.members += members
        listing.refused += refused
    return listing


def batches(members: Sequence[Member], files: int, size: int) -> Iterator[list[Member]]:
    """`members` in groups of at most `files` files and about `size` bytes."""
    group: list[Member] = []
    held = 0
    for member in members:
        if group and (len(group) >= files or held + member.size > size):
            yield group
            group, held = [], 0
        group.append(member)
        held += member.size
    if group:
        yield group
