"""Configuration validation: every problem is one line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.errors import ConfigError
from gateway.core.settings import load_settings, normalize_database_url, parse_settings

GOOD = {
    "gateway": {"sync_interval_s": 30, "results_dir": "var/r"},
    "sync": [{"from": "dcm4chee", "to": "orthanc"}],
    "sources": [
        {
            "id": "orthanc",
            "kind": "orthanc",
            "url": "http://127.0.0.1:8042",
            "username": "orthanc",
            "password_env": "ORTHANC_PASSWORD",
            "roles": ["query", "retrieve", "store"],
        },
        {
            "id": "dcm4chee",
            "kind": "dicomweb",
            "dialect": "dcm4chee",
            "url": "http://127.0.0.1:8080/dcm4chee-arc/aets/DCM4CHEE/rs",
        },
        {
            "id": "legacy",
            "kind": "dimse",
            "host": "127.0.0.1",
            "port": 11112,
            "called_aet": "DCMQRSCP",
        },
        {"id": "xnat", "kind": "xnat", "url": "http://127.0.0.1:8090", "roles": ["research"]},
    ],
}
ENV = {"ORTHANC_PASSWORD": "secret"}


def _with(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {**GOOD, "sources": [dict(s) for s in GOOD["sources"]]}  # type: ignore[attr-defined]
    first = data["sources"][0]  # type: ignore[index]
    first.update(changes)
    return data


def test_good_config_resolves_everything() -> None:
    s = parse_settings(
        GOOD, {**ENV, "DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "redis://r:1/2"}
    )
    assert [x.id for x in s.sources] == ["orthanc", "dcm4chee", "legacy", "xnat"]
    assert s.source("orthanc").password == "secret"
    assert "secret" not in repr(s.source("orthanc"))
    assert s.source("orthanc").auth == "basic"
    assert s.source("dcm4chee").dialect == "dcm4chee"
    assert s.source("legacy").port == 11112
    assert s.sync[0].source == "dcm4chee" and s.sync[0].destination == "orthanc"
    assert s.sync_interval_s == 30
    assert s.database_url == "postgresql+asyncpg://u@h/db"
    assert s.redis_url == "redis://r:1/2"


def test_defaults_sqlite_and_local_redis() -> None:
    s = parse_settings({"sources": []}, {})
    assert s.database_url.startswith("sqlite+aiosqlite:///var/")
    assert s.redis_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sources": [{"id": "a", "kindd": "orthanc"}]}, "unknown key 'sources.a.kindd'"),
        (_with(kind="pacs"), "'sources.orthanc.kind' is 'pacs'"),
        (_with(url="ftp://x"), "'sources.orthanc.url' is not an http(s) URL"),
        (_with(url="http://h:99999"), "'sources.orthanc.url' has a bad port"),
        (_with(timeout_s=0), "'sources.orthanc.timeout_s' must be greater than 0"),
        (_with(roles=["query", "admin"]), "'sources.orthanc.roles' has 'admin'"),
        (_with(port="11112"), "'sources.orthanc.port' must be int"),
        (_with(password_env="NOPE"), "'sources.orthanc.password_env' names $NOPE"),
        (_with(id="dcm4chee"), "duplicate source id 'sources.dcm4chee'"),
        ({**GOOD, "gatway": {}}, "unknown key 'gatway'"),
        ({**GOOD, "gateway": {"sync_interval": 1}}, "unknown key 'gateway.sync_interval'"),
        ({**GOOD, "sync": [{"from": "x", "to": "orthanc"}]}, "'sync[0].from' names unknown source"),
        ({"sources": [{"id": "l", "kind": "dimse", "host": "h"}]}, "'sources.l.port' is required"),
        (
            {"sources": [{"id": "d", "kind": "dicomweb", "url": "http://h", "auth": "bearer"}]},
            "'sources.d.token_url' is required",
        ),
    ],
)
def test_bad_configs_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(data, ENV)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[[sources]\nid=1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(bad, env={})


def test_gateway_config_env_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('[[sources]]\nid = "o"\nkind = "orthanc"\nurl = "http://127.0.0.1:1"\n')
    s = load_settings(env={"GATEWAY_CONFIG": str(cfg)})
    assert s.config_path == cfg and s.sources[0].id == "o"


def test_database_url_drivers() -> None:
    assert normalize_database_url("postgres://a/b") == "postgresql+asyncpg://a/b"
    assert normalize_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalize_database_url("postgresql+asyncpg://a/b") == "postgresql+asyncpg://a/b"


def test_cli_typo_is_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('[[sources]]\nid = "orthanc"\nkindd = "orthanc"\nurl = "http://127.0.0.1:1"\n')
    run = subprocess.run(
        [sys.executable, "-m", "gateway.server.cli.main", "check-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert (
        run.stderr.strip()
        == "pacs-gateway: configuration error: unknown key 'sources.orthanc.kindd'"
    )
