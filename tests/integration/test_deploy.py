"""The compose stack, checked without a Docker engine: Debian's docker-compose validates
the file, every image has a fixed tag and every service a health check, no secret is
written in it, the gateway's compose config loads, and the Dockerfile passes hadolint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.core.settings import load_settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SECRETS = {  # what deploy/env.example names; dummy values for the checks
    "GATEWAY_DB_PASSWORD": "t-db",
    "ARC_DB_PASSWORD": "t-arcdb",
    "LDAP_ROOTPASS": "t-ldap",
    "ORTHANC_PASSWORD": "t-orthanc",
    "XNAT_PASSWORD": "t-xnat",
    "GRAFANA_ADMIN_PASSWORD": "t-grafana",
    "GATEWAY_DEID_KEY": "t-deid",
    "GATEWAY_MAPPING_KEY": "t-mapping",
    "GATEWAY_CURSOR_KEY": "t-cursor",
}
SERVICES = {
    "ldap",
    "arcdb",
    "arc",
    "orthanc",
    "redis",
    "db",
    "gateway",
    "worker",
    "prometheus",
    "grafana",
}
FIXED_TAG = re.compile(r"^[a-z0-9][a-z0-9._/-]*:v?\d+\.\d+[0-9A-Za-z._-]*$")


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """`docker-compose config` of the stack, with every secret set."""
    done = compose("config", env=SECRETS)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def test_compose_config_validates(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == SERVICES


def test_every_secret_comes_from_the_environment(resolved: dict[str, Any]) -> None:
    missing = compose("config", "-q")
    assert missing.returncode != 0 and "in .env" in missing.stderr
    raw = (ROOT / "docker-compose.yml").read_text()
    for name, value in SECRETS.items():
        assert value not in raw
        assert f"${{{name}:?" in raw, name
    names = set(re.findall(r"^([A-Z_]+)=", (DEPLOY / "env.example").read_text(), re.M))
    assert names == set(SECRETS)
    text = yaml.safe_dump(resolved)  # the values land where they are used
    assert all(value in text for value in SECRETS.values())
    for service in yaml.safe_load(raw)["services"].values():
        env = service.get("environment") or {}
        for key, value in env.items() if isinstance(env, dict) else ():
            if re.search(r"PASSWORD|ROOTPASS|_KEY$|SECRET|REGISTERED_USERS", key):
                assert "${" in str(value), key


def test_fixed_tags_health_checks_and_start_order(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        assert FIXED_TAG.match(service["image"]), (name, service["image"])
        assert "latest" not in service["image"]
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in ("gateway", "worker"):
        depends = resolved["services"][name]["depends_on"]
        for needed in ("db", "redis"):
            assert depends[needed]["condition"] == "service_healthy", (name, needed)
    assert resolved["services"]["redis"]["command"][:3] == ["redis-server", "--appendonly", "yes"]


def test_gateway_config_matches_the_stack(resolved: dict[str, Any]) -> None:
    config = DEPLOY / "gateway.compose.toml"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("pacs-gateway")),
            "check-config",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **SECRETS},
    )
    assert done.returncode == 0, done.stderr
    settings = load_settings(config, env=SECRETS)
    by_id = {s.id: s for s in settings.sources}
    assert by_id["dcm4chee"].url == "http://arc:8080/dcm4chee-arc/aets/DCM4CHEE/rs"
    assert (by_id["dcm4chee-dimse"].host, by_id["dcm4chee-dimse"].port) == ("arc", 11112)
    assert by_id["dcm4chee-dimse"].called_aet == "DCM4CHEE"
    assert by_id["orthanc"].kind == "orthanc" and by_id["orthanc"].password == "t-orthanc"
    assert by_id["xnat"].has_role("research")
    prometheus = resolved["services"]["prometheus"]["networks"]["pacs"]["ipv4_address"]
    assert settings.metrics.allows(prometheus) and not settings.metrics.allows("172.28.0.1")
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert jobs["pacs-gateway"]["static_configs"][0]["targets"] == ["gateway:8000"]
    assert "gateway" in settings.allowed_hosts
    assert jobs["pacs-gateway-worker"]["dns_sd_configs"][0]["port"] == settings.metrics.worker_port
    assert settings.metrics.worker_host == "0.0.0.0"


def test_dockerfile() -> None:
    dockerfile = DEPLOY / "Dockerfile"
    hadolint = Path(sys.executable).with_name("hadolint")
    done = subprocess.run(
        [str(hadolint), str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    [base] = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert FIXED_TAG.match(base), base
    [user] = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user.split(":")[0] not in ("root", "0")
    assert any("uv sync --frozen" in line for line in lines)


def test_migrate_command(tmp_path: Path) -> None:
    """`pacs-gateway migrate`, as deploy/README.md runs it before an upgrade."""
    env = {**os.environ, **SECRETS, "DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}"}
    argv = [str(Path(sys.executable).with_name("pacs-gateway")), "migrate", "--config"]
    for _ in range(2):  # again: nothing left to do
        done = subprocess.run(
            [*argv, str(DEPLOY / "gateway.compose.toml")],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert "ok: database schema at the newest migration" in done.stdout
