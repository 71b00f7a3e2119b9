"""Upload spools of IMPORT jobs: `<results_dir>/import/<spool id>/`.

A spool holds the uploaded files under generated names (`00000`, `00001`, ...; a client's
file name is never a path here) and, once the upload is complete, `manifest.json`: each
file's generated name and the name the client gave it (shown in refusals). `/files` does
not serve this directory (it serves RT-STRUCT outputs only).

Life: written by the gateway (`POST /import`) or the CLI, read by the IMPORT job,
removed by the job when it succeeds or is cancelled; a failed job keeps it for a retry,
and `sweep` removes spools older than `[import] spool_keep_s` (uploads whose job failed
and was never retried, or was cancelled before it ran).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from gateway.core.settings import Settings

SPOOL_DIR = "import"
MANIFEST = "manifest.json"
MAX_NAME_CHARS = 255
_SPOOL_ID = re.compile(r"[0-9a-f]{32}\Z")


def spool_root(settings: Settings) -> Path:
    """Where every spool lives."""
    return Path(settings.results_dir) / SPOOL_DIR


def is_spool_id(value: object) -> bool:
    """True for a spool id as `new_spool` makes them (32 hex digits)."""
    return isinstance(value, str) and _SPOOL_ID.match(value) is not None


def spool_path(settings: Settings, spool_id: str) -> Path:
    """The directory of one spool; ValueError for anything but a spool id."""
    if not is_spool_id(spool_id):
        raise ValueError("not a spool id")
    return spool_root(settings) / spool_id


def shown_name(name: str | None, fallback: str) -> str:
    """A client's file name as refusals show it: printable, bounded, never empty."""
    text = "".join(c if c.isprintable() else "?" for c in (name or ""))
    return text[:MAX_NAME_CHARS] or fallback


@dataclass
class Spool:
    """One upload being written: `part()` per file, `seal()` when complete."""

    path: Path
    names: list[tuple[str, str]]

    @property
    def id(self) -> str:
        """The spool id (the directory's name)."""
        return self.path.name

    def part(self, client_name: str | None) -> Path:
        """The path the next uploaded file is written to."""
        stored = f"{len(self.names):05d}"
        self.names.append((stored, shown_name(client_name, f"file {len(self.names) + 1}")))
        return self.path / stored

    def seal(self) -> None:
        """Write the manifest: the upload is complete and may be imported."""
        body = [{"file": stored, "name": name} for stored, name in self.names]
        temporary = self.path / (MANIFEST + ".tmp")
        temporary.write_text(json.dumps(body), encoding="utf-8")
        temporary.replace(self.path / MANIFEST)

    def discard(self) -> None:
        """Remove the spool (an upload refused or broken off)."""
        shutil.rmtree(self.path, ignore_errors=True)


def new_spool(settings: Settings) -> Spool:
    """An empty spool under the results directory."""
    path = spool_path(settings, uuid.uuid4().hex)
    path.mkdir(parents=True)
    return Spool(path, [])


def read_manifest(path: Path) -> list[tuple[Path, str]] | None:
    """(file, client name) of a sealed spool, in upload order; None when not sealed."""
    try:
        body = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    out = []
    for item in body if isinstance(body, list) else ():
        stored = str(item.get("file", "")) if isinstance(item, dict) else ""
        if re.fullmatch(r"[0-9]{5,}", stored):
            out.append((path / stored, shown_name(str(item.get("name") or ""), stored)))
    return out


def remove(settings: Settings, spool_id: str) -> None:
    """Remove one spool (nothing when it is gone already)."""
    shutil.rmtree(spool_path(settings, spool_id), ignore_errors=True)


def sweep(settings: Settings, now: float | None = None) -> int:
    """Remove spools older than `[import] spool_keep_s`; how many were removed."""
    root = spool_root(settings)
    limit = (time.time() if now is None else now) - settings.imports.spool_keep_s
    removed = 0
    try:
        entries = list(root.iterdir())
    except OSError:
        return 0
    for entry in entries:
        try:
            old = is_spool_id(entry.name) and entry.stat().st_mtime < limit
        except OSError:
            continue
        if old:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
