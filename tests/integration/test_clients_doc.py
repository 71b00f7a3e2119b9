"""docs/clients.md's script, taken from the page as it is, run against a real gateway
process (`[auth] mode = "required"`) and worker with a radiologist's API token."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.enums import AuthMode, Role
from gateway.core.settings import Settings
from gateway.devstack.seed import GroundTruth, build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.runtime import Runtime
from tests.conftest import JobEnv
from tests.jobs_support import GatewayProcess, lines

pytestmark = pytest.mark.integration

PATIENTS = 5  # a small demo: one of them is in dcm4chee and not in orthanc
DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"


def documented_script() -> str:
    """The one Python block of docs/clients.md."""
    blocks = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1, "docs/clients.md has exactly one Python script"
    script: str = blocks[0]
    return script


async def _tokens(settings: Settings) -> dict[str, str]:
    runtime = await Runtime.create(settings, run_migrations=False)
    try:
        out = {}
        for role in (Role.RADIOLOGIST, Role.RESEARCHER):
            user = await runtime.auth.create_user(f"script-{role.value.lower()}", [role], "test")
            made = await runtime.auth.create_api_token(user.id, "script", 1, "test")
            out[role.value.lower()] = made.token
        return out
    finally:
        await runtime.aclose()


@pytest.fixture(scope="module")
def truth(job_env: JobEnv) -> GroundTruth:
    asyncio.run(seed_archives(job_env.settings, 42, PATIENTS, None))
    ids = job_env.settings.ids_with_role("store")
    return build_demo(seed=42, patients=PATIENTS, sources=ids).truth


def _run(script: Path, url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PACS_GATEWAY_URL": url, "PACS_GATEWAY_TOKEN": token}
    return subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_documented_script_searches_syncs_and_follows_to_the_end(
    job_env: JobEnv, truth: GroundTruth, tmp_path: Path
) -> None:
    auth = dataclasses.replace(job_env.settings.auth, mode=AuthMode.REQUIRED)
    tokens = asyncio.run(_tokens(dataclasses.replace(job_env.settings, auth=auth)))
    info = job_env.stack.info
    assert info is not None
    config = job_env.workdir / "gateway-clients.toml"
    config.write_text(
        info.gateway_toml(
            results_dir=str(job_env.workdir / "results"), sync_interval_s=0, auth_mode="required"
        )
    )
    script = tmp_path / "sync_patient.py"
    script.write_text(documented_script())
    gateway = GatewayProcess(config, job_env.env, job_env.workdir / "clients-gw.log").start()
    worker = job_env.worker("clients-worker").start()
    url = f"http://127.0.0.1:{gateway.port}/graphql"
    try:
        run = _run(script, url, tokens["radiologist"], "--from", "dcm4chee", "--to", "orthanc")
        refused = _run(script, url, tokens["researcher"], "--from", "dcm4chee", "--to", "orthanc")
        anonymous = _run(script, url, "not-a-token", "--from", "dcm4chee", "--to", "orthanc")
    finally:
        worker.stop()
        gateway.stop()
    log = "\n".join(lines(job_env.workdir / "clients-gw.log"))
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{log}"
    out = run.stdout.splitlines()
    print(run.stdout)  # the doc's sample output comes from here (pytest -s)
    assert f"patients: {len(truth.patients)}" in out
    for source in ("orthanc", "dcm4chee", "legacy"):
        assert f"  {source}: OK" in out
    lacking = {
        p.patient_id
        for p in truth.patients
        if "dcm4chee" in p.sources and "orthanc" not in p.sources
    }
    [chosen] = [line.split()[2] for line in out if line.startswith("syncing patient ")]
    assert chosen in lacking
    statuses = [line.split()[0] for line in out if line.startswith("  ") and "%" in line]
    assert statuses[0] in ("QUEUED", "RUNNING") and "RUNNING" in statuses
    assert statuses[-1] == "SUCCEEDED"
    assert out[-1] == "final status: SUCCEEDED"
    # the same script with a researcher's token: patient names are not theirs to see
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "refused: FORBIDDEN: " in refused.stderr, refused.stderr
    assert "patients:" not in refused.stdout
    # and without a valid token nothing is answered
    assert anonymous.returncode == 2 and "patients:" not in anonymous.stdout
    assert "refused: UNAUTHENTICATED: authentication required" in anonymous.stderr
