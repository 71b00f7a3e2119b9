"""The OHIF Viewer's install (integrity, rebasing under /viewer/) and how /viewer/ serves it."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from gateway.core.enums import AuthMode
from gateway.core.settings import AuthConfig, Settings
from gateway.devstack.viewer import InstallError, install, integrity_of, rebase
from gateway.server import viewer

INDEX = (
    b'<html><script>window.PUBLIC_URL="/"</script><script src="/app.bundle.0123456789abcdef.js">'
)


def _package(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_rebase_moves_root_paths_under_the_base() -> None:
    html = rebase("index.html", INDEX + b'<link href="/assets/x.css"><a href="//cdn">', "/v/")
    assert b'src="/v/app.bundle' in html and b'href="/v/assets/x.css"' in html
    assert b'window.PUBLIC_URL="/v/"' in html and b'href="//cdn"' in html
    js = rebase("a.js", b'__webpack_require__.p = "/";', "/v/")
    assert js == b'__webpack_require__.p = "/v/";'
    assert rebase("a.css", b"url(/f.woff2) url(//x)", "/v/") == b"url(/v/f.woff2) url(//x)"
    assert rebase("a.wasm", b"url(/f)", "/v/") == b"url(/f)"


def test_install_checks_the_pinned_integrity(tmp_path: Path) -> None:
    good = _package(tmp_path / "p.tgz", {"package/dist/index.html": INDEX, "package/x": b"1"})
    with pytest.raises(InstallError):
        install(good, "sha512-not-it", tmp_path / "dist")
    assert not (tmp_path / "dist").exists()
    assert install(good, integrity_of(good), tmp_path / "dist") == 1
    assert b'src="/viewer/app.bundle' in (tmp_path / "dist" / "index.html").read_bytes()
    bad = _package(tmp_path / "b.tgz", {"package/dist/../../evil": b"x"})
    with pytest.raises(InstallError):
        install(bad, integrity_of(bad), tmp_path / "other")


def _client(dist: Path, mode: AuthMode = AuthMode.REQUIRED) -> TestClient:
    settings = Settings(sources=(), auth=AuthConfig(mode=mode))

    class _State:
        runtime = type("R", (), {"settings": settings})()

    app = Starlette(routes=[Mount("/viewer", viewer.router(lambda r: _State.runtime, dist))])
    return TestClient(app)


def test_viewer_files_config_and_isolation(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_bytes(INDEX)
    (dist / "app.bundle.0123456789abcdef.js").write_bytes(b"//")
    (tmp_path / "secret.txt").write_text("no")
    client = _client(dist)
    page = client.get("/viewer/viewer?StudyInstanceUIDs=1.2.3")
    assert page.status_code == 200 and page.content == INDEX, "the viewer's router decides"
    assert page.headers["cross-origin-opener-policy"] == "same-origin"
    assert page.headers["cross-origin-embedder-policy"] == "require-corp"
    assert "https:" not in page.headers["content-security-policy"]
    bundle = client.get("/viewer/app.bundle.0123456789abcdef.js")
    assert bundle.headers["cache-control"].endswith("immutable")
    assert client.get("/viewer/../secret.txt").content != b"no"
    config = client.get("/viewer/app-config.js")
    assert config.headers["content-type"].startswith("application/javascript")
    assert '"routerBasename": "/viewer"' in config.text
    assert 'window.location.origin + "/dicomweb"' in config.text
    assert 'window.location.replace("/login?next="' in config.text
    assert "if (!token && true)" in config.text
    assert "if (!token && false)" in _client(dist, AuthMode.OPEN).get("/viewer/app-config.js").text
    assert client.get("/viewer/init-service-worker.js").text == ""


def test_without_an_install_the_viewer_says_how(tmp_path: Path) -> None:
    answer = _client(tmp_path / "missing").get("/viewer/")
    assert answer.status_code == 503 and "make setup" in answer.text
