"""DICOM import end to end: `POST /import` with `[auth] mode = "required"`, a worker, the real
archives; the CLI once.

The ZIP holds good instances (in nested folders, one of them a raw data set without
preamble), a duplicate, a non-DICOM file, a truncated DICOM and a path-traversal member:
the good ones are stored once (checked in the archive itself), the others listed with
their reasons; the same ZIP again stores nothing twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from starlette.testclient import TestClient

from gateway.core.enums import AuthMode, Role
from gateway.core.settings import Settings
from gateway.server.app import create_app
from tests.auth_support import api_users
from tests.conftest import JobEnv
from tests.jobs_support import JOB_FIELDS, TERMINAL, big_study, instance_uids

pytestmark = pytest.mark.integration

STUDY, FILES = big_study(8, seed=1414, rows=24)
JOB = f"query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} input }} }}"


def _sop(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def _raw(data: bytes) -> bytes:
    """The instance as a raw data set (implicit VR little endian, no preamble, no meta)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta, ds.preamble = FileMetaDataset(), None
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, implicit_vr=True, little_endian=True)
    return out.getvalue()


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name), data)
    return out.getvalue()


GOOD = [FILES[0], FILES[1], FILES[2], FILES[3]]
UPLOAD = _zip(
    [
        ("export/CT/1/a.dcm", FILES[0]),
        ("export/CT/1/b.dcm", FILES[1]),
        ("export/CT/2/c.dcm", FILES[2]),
        ("export/raw/d.ima", _raw(FILES[3])),
        ("export/copy-of-a.dcm", FILES[0]),
        ("export/README.txt", b"exported by a modality, not DICOM"),
        ("export/CT/2/cut.dcm", FILES[4][: len(FILES[4]) - 500]),
        ("../../escape.dcm", FILES[5]),
    ]
)


@dataclasses.dataclass
class World:
    """The module's stack in required mode, a worker, one API token per role."""

    env: JobEnv
    settings: Settings
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def world(job_env: JobEnv) -> Iterator[World]:
    auth = dataclasses.replace(job_env.settings.auth, mode=AuthMode.REQUIRED)
    settings = dataclasses.replace(job_env.settings, auth=auth)
    worker = job_env.worker("import-worker").start()
    try:
        roles = (Role.ADMIN, Role.RADIOLOGIST, Role.RESEARCHER)
        made = asyncio.run(api_users(settings, "import", roles))
        yield World(job_env, settings, {role: token for role, (token, _) in made.items()})
    finally:
        worker.stop()


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _wait(client: TestClient, token: str, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = {"query": JOB, "variables": {"id": job_id}}
        answer = client.post("/graphql", json=body, headers=_auth(token)).json()
        job: dict[str, Any] = answer["data"]["job"]
        if job["status"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job stuck: {job}"
        time.sleep(0.2)


def _post_zip(client: TestClient, token: str | None, to: str, data: bytes) -> Any:
    headers = {**_auth(token), "Content-Type": "application/zip"}
    return client.post(f"/import?to={to}", content=data, headers=headers)


def test_a_zip_is_imported_once_and_refusals_are_listed(world: World) -> None:
    admin = world.tokens["admin"]
    with TestClient(create_app(world.settings)) as client:
        page = client.get("/import", headers={"Accept": "text/html"})  # the dashboard's page
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        answer = _post_zip(client, admin, "orthanc", UPLOAD)
        assert answer.status_code == 202, answer.text
        job = _wait(client, admin, answer.json()["jobId"])
        assert job["status"] == "SUCCEEDED", job
        assert job["kind"] == "IMPORT"
        result = job["result"]
        assert (result["files"], result["stored"], result["alreadyPresent"]) == (8, 4, 0)
        assert (result["refused"], result["duplicates"], result["failed"]) == (4, 1, 0)
        assert result["studyInstanceUids"] == [STUDY]
        reasons = {r["file"]: r["reason"] for r in result["refusedFiles"]}
        assert set(reasons) == {
            "upload.zip/export/copy-of-a.dcm",
            "upload.zip/export/README.txt",
            "upload.zip/export/CT/2/cut.dcm",
            "upload.zip/../../escape.dcm",
        }
        assert "same instance" in reasons["upload.zip/export/copy-of-a.dcm"]
        assert "not DICOM" in reasons["upload.zip/export/README.txt"]
        assert "truncated" in reasons["upload.zip/export/CT/2/cut.dcm"]
        assert "leaving the upload" in reasons["upload.zip/../../escape.dcm"]
        spool = world.settings.results_dir / "import" / job["input"]["spool"]
        assert not spool.exists(), "the spool is removed once the job succeeded"
        assert not (world.settings.results_dir.parent / "escape.dcm").exists()
        held = asyncio.run(instance_uids(world.settings, "orthanc", STUDY))
        assert sorted(held) == sorted(_sop(f) for f in GOOD), "each good instance, once"

        again = _post_zip(client, admin, "orthanc", UPLOAD)
        assert again.status_code == 202
        second = _wait(client, admin, again.json()["jobId"])
        assert second["status"] == "SUCCEEDED", second
        assert (second["result"]["stored"], second["result"]["alreadyPresent"]) == (0, 4)
        held = asyncio.run(instance_uids(world.settings, "orthanc", STUDY))
        assert sorted(held) == sorted(_sop(f) for f in GOOD), "nothing stored twice"

        listed = client.post(
            "/graphql",
            json={"query": "{ jobs(kind: IMPORT) { totalCount edges { node { id result } } } }"},
            headers=_auth(admin),
        ).json()["data"]["jobs"]
        assert listed["totalCount"] >= 2
        assert {e["node"]["id"] for e in listed["edges"]} >= {job["id"], second["id"]}


def test_authentication_roles_and_the_size_bound(world: World) -> None:
    research = world.tokens["researcher"]
    single = FILES[6]
    with TestClient(create_app(world.settings)) as client:
        answer = _post_zip(client, None, "orthanc", UPLOAD)
        assert answer.status_code == 401 and answer.json()["code"] == "UNAUTHENTICATED"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert _post_zip(client, "pgw_not-a-token", "orthanc", UPLOAD).status_code == 401
        refused = _post_zip(client, research, "orthanc", UPLOAD)
        assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
        unknown = _post_zip(client, research, "nowhere", UPLOAD)
        assert unknown.status_code == 400 and unknown.json()["code"] == "BAD_USER_INPUT"
        headers = {**_auth(research), "Content-Type": "application/dicom"}
        ok = client.post("/import?to=research", content=single, headers=headers)
        assert ok.status_code == 202, ok.text
        job = _wait(client, research, ok.json()["jobId"])
        assert job["status"] == "SUCCEEDED" and job["result"]["stored"] == 1, job
        assert asyncio.run(instance_uids(world.settings, "research", STUDY)) == [_sop(single)]

    small = dataclasses.replace(
        world.settings,
        imports=dataclasses.replace(world.settings.imports, max_bytes=len(UPLOAD) // 2),
    )
    spools = small.results_dir / "import"
    before = set(spools.iterdir()) if spools.exists() else set()
    admin = world.tokens["admin"]
    with TestClient(create_app(small)) as client:
        declared = _post_zip(client, admin, "orthanc", UPLOAD)  # Content-Length beyond the bound
        assert declared.status_code == 413 and declared.json()["code"] == "PAYLOAD_TOO_LARGE"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            for at in range(0, len(UPLOAD), 4096):
                yield UPLOAD[at : at + 4096]

        streamed = client.post(
            "/import?to=orthanc",
            content=chunks(),
            headers={**_auth(admin), "Content-Type": "application/zip"},
        )
        assert streamed.status_code == 413 and streamed.json()["code"] == "PAYLOAD_TOO_LARGE"
        files = {"files": ("one.dcm", FILES[7], "application/dicom")}
        form = client.post("/import?to=orthanc", files=files, headers=_auth(admin))
        assert form.status_code == 202, "a multipart form within the bound is taken"
        job = _wait(client, admin, form.json()["jobId"])
        assert job["status"] == "SUCCEEDED" and job["result"]["stored"] == 1, job
    left = set(spools.iterdir()) - before
    assert not left, "refused uploads leave no spool behind"


def test_the_cli_imports_a_folder(world: World, tmp_path: Path) -> None:
    study, files = big_study(3, seed=1515, rows=16)
    folder = tmp_path / "scan"
    (folder / "deep" / "er").mkdir(parents=True)
    for n, data in enumerate(files):
        (folder / "deep" / "er" / f"{n}.dcm").write_bytes(data)
    (folder / "notes.txt").write_text("not DICOM")
    exe = Path(sys.executable).with_name("pacs-gateway")
    env = world.env
    done = subprocess.run(
        [str(exe), "import", str(folder), "--to", "research", "--config", str(env.config)],
        env={**os.environ, **env.env},
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    summary = json.loads(done.stdout)
    assert summary["status"] == "SUCCEEDED"
    result = summary["result"]
    assert (result["stored"], result["refused"]) == (3, 1), result
    assert result["refusedFiles"][0]["file"] == "notes.txt"
    held = asyncio.run(instance_uids(world.settings, "research", study))
    assert sorted(held) == sorted(_sop(f) for f in files)
