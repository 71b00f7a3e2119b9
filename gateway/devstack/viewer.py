"""Install the OHIF Viewer's prebuilt application (`@ohif/app`'s `dist/`, fetched from the
npm registry by `npm pack` in `make setup`) to be served under `/viewer/`.

The package is checked against the integrity the Makefile pins, then unpacked with its
root-relative paths moved under the base path: OHIF's build loads `/app.bundle.js`,
`/assets/...` and its chunks from `/`, where the dashboard lives.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import tarfile
from pathlib import Path

MARK = ".installed"
_ROOTED_ATTR = re.compile(rb'(\s(?:src|href|content)=")/(?!/)')


class InstallError(RuntimeError):
    """The package is not the one pinned, or not an OHIF build."""


def integrity_of(path: Path) -> str:
    """The npm-style `sha512-<base64>` integrity of a file."""
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def rebase(name: str, data: bytes, base: str) -> bytes:
    """A file of the build with its root-relative URLs under `base` (e.g. "/viewer/")."""
    prefix = base.encode()
    if name.endswith(".html"):
        data = _ROOTED_ATTR.sub(rb"\1" + prefix, data)
        return data.replace(b'window.PUBLIC_URL="/"', b'window.PUBLIC_URL="' + prefix + b'"')
    if name.endswith(".js"):
        return data.replace(
            b'__webpack_require__.p = "/";', b'__webpack_require__.p = "' + prefix + b'";'
        )
    if name.endswith(".css"):
        return re.sub(rb"url\(/(?!/)", b"url(" + prefix, data)
    return data


def install(tarball: Path, integrity: str, dest: Path, base: str = "/viewer/") -> int:
    """Check `tarball` against `integrity`, then unpack its `package/dist/` into `dest`
    (replacing what was there), rebased under `base`; how many files."""
    found = integrity_of(tarball)
    if found != integrity:
        raise InstallError(f"{tarball.name}: integrity {found[:20]}... is not the pinned one")
    staging = dest.with_name(dest.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.startswith("package/dist/"):
                continue
            relative = Path(member.name[len("package/dist/") :])
            if relative.is_absolute() or ".." in relative.parts:
                raise InstallError(f"unsafe path in the package: {member.name!r}")
            source = archive.extractfile(member)
            if source is None:
                continue
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rebase(relative.name, source.read(), base))
            count += 1
    if not (staging / "index.html").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise InstallError("the package has no dist/index.html")
    (staging / MARK).write_text(integrity + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return count
