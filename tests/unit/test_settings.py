"""Configuration validation: every problem is one line naming the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from gateway.core.enums import Dialect, SourceAuth, SourceKind, SourceRole
from gateway.core.errors import ConfigError
from gateway.core.settings import (
    Settings,
    SourceConfig,
    load_settings,
    normalize_database_url,
    parse_settings,
)

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


def test_unknown_or_missing_kind_names_the_key_and_lists_the_kinds() -> None:
    kinds = ", ".join(k.value for k in SourceKind)
    assert kinds == "orthanc, dicomweb, dimse, xnat"
    with pytest.raises(ConfigError) as err:
        parse_settings(_with(kind="pacs"), ENV)
    assert str(err.value) == f"'sources.orthanc.kind' is 'pacs', expected one of {kinds}"
    with pytest.raises(ConfigError) as err:
        parse_settings({"sources": [{"id": "a", "url": "http://h"}]}, ENV)
    assert str(err.value) == f"'sources.a.kind' is required (one of {kinds})"


@pytest.mark.parametrize("kind", list(SourceKind))
def test_each_kind_requires_its_keys(kind: SourceKind) -> None:
    full = {"url": "http://h", "host": "h", "port": 104, "called_aet": "AE"}
    for key in kind.required:
        raw = {"id": "s", "kind": kind.value, **{k: v for k, v in full.items() if k != key}}
        with pytest.raises(ConfigError) as err:
            parse_settings({"sources": [raw]}, {})
        assert str(err.value) == f"'sources.s.{key}' is required for kind {kind.value!r}"
    raw = {"id": "s", "kind": kind.value, **{k: full[k] for k in kind.required}}
    assert parse_settings({"sources": [raw]}, {}).sources[0].kind is kind


@pytest.mark.parametrize("kind", list(SourceKind))
def test_each_kind_names_an_importable_adapter(kind: SourceKind) -> None:
    module, _, name = kind.adapter.partition(":")
    assert isinstance(getattr(import_module(module), name), type)


def test_other_value_kinds_list_their_enum() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(_with(dialect="pacs"), ENV)
    assert str(err.value).endswith(f"expected one of {', '.join(d.value for d in Dialect)}")
    with pytest.raises(ConfigError) as err:
        parse_settings(_with(auth="kerberos"), ENV)
    assert str(err.value).endswith(f"expected one of {', '.join(a.value for a in SourceAuth)}")
    with pytest.raises(ConfigError) as err:
        parse_settings(_with(roles=["admin"]), ENV)
    assert str(err.value).endswith(f"expected some of {', '.join(r.value for r in SourceRole)}")


def _defaults(cls: type) -> dict[str, object]:
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


def test_minimal_config_takes_every_default_from_the_dataclasses() -> None:
    s = parse_settings({"sources": [{"id": "o", "kind": "orthanc", "url": "http://h"}]}, {})
    given = {"sources", "config_path"}
    for key, default in _defaults(Settings).items():
        if key not in given:
            assert getattr(s, key) == default, key
    source = s.sources[0]
    given = {"name", "url"}  # the name defaults to the id; the url was given
    for key, default in _defaults(SourceConfig).items():
        if key not in given:
            assert getattr(source, key) == default, key
    assert source.name == "o" and source.kind is SourceKind.ORTHANC
    assert source.roles == (SourceRole.QUERY,) and source.auth is SourceAuth.NONE


def test_a_username_alone_means_basic_auth_and_key_variables_are_configurable() -> None:
    raw = {"id": "o", "kind": "orthanc", "url": "http://h", "username": "u"}
    gw = {"deid_key_env": "MY_DEID", "mapping_key_env": "MY_MAPPING"}
    env = {"MY_DEID": "d", "MY_MAPPING": "m", "GATEWAY_DEID_KEY": "not this one"}
    s = parse_settings({"gateway": gw, "sources": [raw]}, env)
    assert s.sources[0].auth is SourceAuth.BASIC
    assert (s.deid_key, s.mapping_key) == ("d", "m")
    s = parse_settings({"sources": [raw]}, {"GATEWAY_DEID_KEY": "k", "GATEWAY_MAPPING_KEY": ""})
    assert (s.deid_key, s.mapping_key) == ("k", None)


def test_source_config_turns_plain_strings_into_the_enums() -> None:
    config = SourceConfig(id="s", kind="dimse", roles=("query", "store"))  # type: ignore[arg-type]
    assert config.kind is SourceKind.DIMSE and config.kind == "dimse"
    assert config.roles == (SourceRole.QUERY, SourceRole.STORE)
    assert config.has_role("store") and not config.has_role("research")
    with pytest.raises(ValueError, match="pacs"):
        SourceConfig(id="s", kind="pacs")  # type: ignore[arg-type]


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


def test_hardening_limits_are_configurable_and_positive() -> None:
    s = parse_settings({**GOOD, "gateway": {"max_query_cost": 5000}}, ENV)
    assert s.max_query_cost == 5000
    assert parse_settings(GOOD, ENV).max_query_cost == 1_000_000
    with pytest.raises(ConfigError, match=r"'gateway\.max_query_cost' must be greater than 0"):
        parse_settings({**GOOD, "gateway": {"max_query_cost": 0}}, ENV)


def test_fairness_limits_are_configurable() -> None:
    gw = {"rate_per_s": 5, "burst": 20, "max_queued_jobs_per_user": 7, "time_per_s": 1}
    s = parse_settings({**GOOD, "gateway": {**gw, "time_burst_s": 3}}, ENV)
    assert (s.rate_per_s, s.burst, s.max_queued_jobs_per_user) == (5.0, 20, 7)
    assert (s.time_per_s, s.time_burst_s) == (1.0, 3.0)
    assert (
        parse_settings(
            {**GOOD, "gateway": {"max_concurrent_per_caller": 2}}, ENV
        ).max_concurrent_per_caller
        == 2
    )
    assert parse_settings(GOOD, ENV).time_per_s > 0  # on by default
    off = parse_settings({**GOOD, "gateway": {"rate_per_s": 0, "max_queued_jobs_per_user": 0}}, ENV)
    assert off.rate_per_s == 0 and off.max_queued_jobs_per_user == 0
    for bad, message in [
        ({"rate_per_s": -1}, "'gateway.rate_per_s' must be 0 (off) or more"),
        ({"burst": 0}, "'gateway.burst' must be greater than 0"),
        ({"time_per_s": -0.1}, "'gateway.time_per_s' must be 0 (off) or more"),
        ({"time_burst_s": 0}, "'gateway.time_burst_s' must be greater than 0"),
        ({"max_concurrent_per_caller": -1}, "'gateway.max_concurrent_per_caller' must be 0"),
        ({"max_queued_jobs_per_user": -2}, "'gateway.max_queued_jobs_per_user' must be 0"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_settings({**GOOD, "gateway": bad}, ENV)
        assert message in str(err.value)
