"""`pacs-gateway import PATH --to ARCHIVE`: an IMPORT job run in this process, with a
progress bar and a summary.

PATH is a DICOM file, a ZIP or a folder (every file under it, symbolic links left out).
Its files are copied into a spool as `POST /import` would write them (the same bound,
`[import] max_bytes`), then the same job runs here, recorded like any other (as
`pacs-gateway sync` does): no worker is needed, the job shows in `jobs`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gateway.core.errors import InvalidInput, TooLarge
from gateway.core.settings import Settings, load_settings
from gateway.jobs import spool as spools
from gateway.jobs.specs import ImportSpec
from gateway.server.cli.here import run_shown


def _files(path: Path) -> Iterator[tuple[Path, str]]:
    """(file, name shown) of a file or of every regular file under a folder."""
    if path.is_file():
        yield path, path.name
        return
    for found in sorted(path.rglob("*")):
        if found.is_file() and not found.is_symlink():
            yield found, found.relative_to(path).as_posix()


def spool_path(settings: Settings, path: Path) -> str:
    """Copy PATH's files into a new spool; its id. `TooLarge` beyond `[import] max_bytes`."""
    if not path.exists():
        raise InvalidInput(f"{path}: no such file or folder")
    spools.sweep(settings)
    spool = spools.new_spool(settings)
    limit, size = settings.imports.max_bytes, 0
    try:
        for found, name in _files(path):
            size += found.stat().st_size
            if size > limit:
                raise TooLarge(f"an import is at most {limit} bytes ([import] max_bytes)")
            shutil.copyfile(found, spool.part(name))
        if not spool.names:
            raise InvalidInput(f"{path}: no file to import")
        spool.seal()
    except BaseException:
        spool.discard()
        raise
    return spool.id


async def run_import(settings: Settings, path: Path, destination: str, quiet: bool = False) -> int:
    """0 when the job succeeded, 1 when it failed, 2 for a refused input."""
    from workers.jobs import importing

    try:
        ImportSpec.parse({"to": destination, "spool": "0" * 32}, settings)
        spec = ImportSpec(await asyncio.to_thread(spool_path, settings, path), destination)
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return await run_shown(settings, spec, importing.run, quiet)


def cmd_import(args: argparse.Namespace) -> int:
    """Import a file, folder or ZIP of DICOM files into one archive."""
    settings = load_settings(args.config)
    return asyncio.run(run_import(settings, Path(args.path), args.destination, args.quiet))


def add_parsers(
    sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    """The `import` subcommand."""
    p = with_config(
        sub.add_parser("import", help="store a file, folder or ZIP of DICOM files in an archive")
    )
    p.add_argument("path", help="a DICOM file, a ZIP, or a folder")
    p.add_argument("--to", dest="destination", required=True, help="the archive's source id")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import)
