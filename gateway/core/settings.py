"""Settings: the TOML configuration file plus a few environment variables.

Read once at start (`load_settings`) and passed down; nothing else in the
project reads `os.environ`. Every problem is a `ConfigError` whose one-line
message names the offending key.

Each default is written once, on the dataclasses below; the parser passes only
the keys a file sets and lets the dataclass default apply. Plain dataclasses
rather than pydantic-settings: no extra dependency, and the hand-written parser
keeps its one-line errors naming the key (`'sources.orthanc.kind' is 'pacs'`).
Value kinds (source kind, role, dialect, auth) are the StrEnums of
`gateway.core.enums`; `SourceKind` also says which keys a kind requires.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gateway.core.enums import AuthMode, Dialect, LogFormat, SourceAuth, SourceKind, SourceRole
from gateway.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One PACS as configured in a `[[sources]]` table."""

    id: str
    kind: SourceKind
    name: str = ""
    url: str | None = None
    dialect: Dialect = Dialect.GENERIC
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    auth: SourceAuth = SourceAuth.NONE
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    called_aet: str | None = None
    calling_aet: str = "PACSGW"
    roles: tuple[SourceRole, ...] = (SourceRole.QUERY,)
    timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    max_concurrency: int = 8
    retries: int = 2
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 10.0
    dicomweb_root: str = "/dicom-web"  # orthanc: its DICOMweb plugin's root ("" if none)

    def __post_init__(self) -> None:
        # Plain strings (as tests and benchmarks write them) become the enums.
        object.__setattr__(self, "kind", SourceKind(self.kind))
        object.__setattr__(self, "dialect", Dialect(self.dialect))
        object.__setattr__(self, "auth", SourceAuth(self.auth))
        object.__setattr__(self, "roles", tuple(SourceRole(r) for r in self.roles))

    def has_role(self, role: str) -> bool:
        """True when the source is configured with `role`."""
        return role in self.roles


@dataclass(frozen=True, slots=True)
class SyncPair:
    """A `[[sync]]` pair run periodically."""

    source: str
    destination: str


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The `[auth]` table: how callers prove who they are."""

    mode: AuthMode = AuthMode.REQUIRED
    session_ttl_s: float = 8 * 3600.0
    lockout_failures: int = 5  # failed logins in a row before the account waits
    lockout_s: float = 300.0
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    roles_claim: str = "roles"
    # the browser login through the provider (authorization code + PKCE): on with a client id
    oidc_client_id: str | None = None
    oidc_client_secret_env: str | None = None  # names the variable holding the secret
    oidc_client_secret: str | None = field(default=None, repr=False)  # confidential clients
    oidc_scopes: str = "openid profile"
    token_cache_s: float = 30.0  # how long a verified token is trusted without the database
    audit_syslog: str | None = None  # udp://host:port: every audit event also as RFC 5424
    audit_syslog_facility: int = 10  # security/authorization

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", AuthMode(self.mode))


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The `[metrics]` table: Prometheus metrics of the gateway and the workers."""

    enabled: bool = True
    allow: tuple[Network, ...] = LOOPBACK  # who may scrape /metrics (addresses or CIDRs)
    worker_host: str = "127.0.0.1"  # where each worker serves its own /metrics
    worker_port: int = 9101  # 0: workers serve no metrics
    health_check_min_s: float = 5.0  # a scrape starts a health check at most this often

    def allows(self, address: str | None) -> bool:
        """Whether a client at `address` may read /metrics (never when it is no address)."""
        try:
            ip = ipaddress.ip_address((address or "").split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allow)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """The `[telemetry]` table: OpenTelemetry traces, off unless an endpoint is set."""

    otlp_endpoint: str | None = None  # an OTLP/HTTP collector, e.g. http://collector:4318
    service_name: str = "pacs-gateway"


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """The `[logging]` table: how the gateway and the workers write their logs."""

    format: LogFormat = LogFormat.TEXT
    level: str = "INFO"

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", LogFormat(self.format))


GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class ImportConfig:
    """The `[import]` table: bounds of a DICOM upload (`POST /import`, `pacs-gateway import`)."""

    max_bytes: int = 2 * GIB  # an upload beyond this is refused (413)
    max_unpacked_bytes: int = 8 * GIB  # the files of its ZIPs, uncompressed, at most
    max_files: int = 100_000  # files in one upload (ZIP members counted), at most
    max_ratio: float = 200.0  # a ZIP member over 1 MiB compressed more than this is refused
    spool_keep_s: float = 7 * 86400.0  # an upload whose job never succeeded is removed after


@dataclass(frozen=True, slots=True)
class DicomwebConfig:
    """The `[dicomweb]` table: the federated DICOMweb endpoint (`/dicomweb`, `/viewer/`)."""

    enabled: bool = True
    default_store: str | None = None  # STOW-RS without ?archive=: this one (else the first)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway and the workers need, resolved once."""

    sources: tuple[SourceConfig, ...]
    sync: tuple[SyncPair, ...] = ()
    sync_interval_s: float = 60.0
    results_dir: Path = Path("var/results")
    database_url: str = "sqlite+aiosqlite:///var/gateway.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    config_path: Path | None = None
    deid_key_env: str = "GATEWAY_DEID_KEY"
    mapping_key_env: str = "GATEWAY_MAPPING_KEY"
    deid_key: str | None = field(default=None, repr=False)
    mapping_key: str | None = field(default=None, repr=False)
    cursor_key_env: str = "GATEWAY_CURSOR_KEY"
    # the key that seals page cursors; set it alike on every gateway behind one balancer
    cursor_key: str | None = field(default=None, repr=False)
    rtstruct_auto: bool = False
    rtstruct_poll_s: float = 60.0
    index_interval_s: float = 30.0  # key index refresh from each archive's changes, 0 = off
    index_freshness_s: float = 300.0  # an index older than this is not used for pages
    index_reconcile_s: float = 3600.0  # a full listing this often (deletions without a feed)
    # Host header values served (a DNS-rebinding page is refused); "*" = any
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    max_body_bytes: int = 1 << 20  # a POST body beyond this is refused (413)
    max_query_cost: int = 1_000_000  # a GraphQL operation estimated above this is refused
    # a GraphQL document with more field selections is refused before validation
    # (fragments counted where spread and on their own; GraphiQL's introspection: 471)
    max_fields: int = 1000
    # /graphql requests per caller (user, API token, or address when anonymous or open):
    # a token bucket refilled at rate_per_s up to burst; 0 = no limit (429 beyond)
    rate_per_s: float = 100.0
    burst: int = 1000
    # seconds of this process's time (its event loop and its GraphQL documents' thread)
    # per caller: refilled at time_per_s up to time_burst_s; a request is charged what it
    # took, and a caller in debt waits (429 beyond a second); 0 = no limit
    time_per_s: float = 0.05
    time_burst_s: float = 2.0
    max_concurrent_per_caller: int = 16  # /graphql requests served at once; 0 = no bound
    max_queued_jobs_per_user: int = 100  # submissions beyond are refused; 0 = no quota
    auth: AuthConfig = field(default_factory=AuthConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    imports: ImportConfig = field(default_factory=ImportConfig)  # the `[import]` table
    dicomweb: DicomwebConfig = field(default_factory=DicomwebConfig)

    def source(self, source_id: str) -> SourceConfig:
        """The source with this id; `KeyError` when there is none."""
        for s in self.sources:
            if s.id == source_id:
                return s
        raise KeyError(source_id)

    def ids_with_role(self, role: str) -> list[str]:
        """Ids of the sources configured with `role`, in config order."""
        return [s.id for s in self.sources if s.has_role(role)]


_GATEWAY_KEYS: dict[str, tuple[type, ...]] = {
    "sync_interval_s": (int, float),
    "results_dir": (str,),
    "deid_key_env": (str,),
    "cursor_key_env": (str,),
    "mapping_key_env": (str,),
    "rtstruct_auto": (bool,),
    "rtstruct_poll_s": (int, float),
    "index_interval_s": (int, float),
    "index_freshness_s": (int, float),
    "index_reconcile_s": (int, float),
    "allowed_hosts": (list,),
    "max_body_bytes": (int,),
    "max_query_cost": (int,),
    "max_fields": (int,),
    "rate_per_s": (int, float),
    "burst": (int,),
    "time_per_s": (int, float),
    "time_burst_s": (int, float),
    "max_concurrent_per_caller": (int,),
    "max_queued_jobs_per_user": (int,),
}
_SOURCE_KEYS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "name": (str,),
    "kind": (str,),
    "url": (str,),
    "dialect": (str,),
    "username": (str,),
    "password_env": (str,),
    "auth": (str,),
    "token_url": (str,),
    "client_id": (str,),
    "client_secret_env": (str,),
    "host": (str,),
    "port": (int,),
    "called_aet": (str,),
    "calling_aet": (str,),
    "roles": (list,),
    "timeout_s": (int, float),
    "connect_timeout_s": (int, float),
    "max_concurrency": (int,),
    "retries": (int,),
    "breaker_threshold": (int,),
    "breaker_cooldown_s": (int, float),
    "dicomweb_root": (str,),
}
# Keys passed to the dataclass as they are (when present); the rest are converted below.
_AUTH_KEYS: dict[str, tuple[type, ...]] = {
    "mode": (str,),
    "session_ttl_s": (int, float),
    "lockout_failures": (int,),
    "lockout_s": (int, float),
    "oidc_issuer": (str,),
    "oidc_audience": (str,),
    "roles_claim": (str,),
    "oidc_client_id": (str,),
    "oidc_client_secret_env": (str,),
    "oidc_scopes": (str,),
    "token_cache_s": (int, float),
    "audit_syslog": (str,),
    "audit_syslog_facility": (int,),
}
_METRICS_KEYS: dict[str, tuple[type, ...]] = {
    "enabled": (bool,),
    "allow": (list,),
    "worker_host": (str,),
    "worker_port": (int,),
    "health_check_min_s": (int, float),
}

_AS_IS = (
    "username",
    "token_url",
    "client_id",
    "host",
    "port",
    "called_aet",
    "calling_aet",
    "max_concurrency",
    "retries",
    "breaker_threshold",
)
_FLOATS = ("timeout_s", "connect_timeout_s", "breaker_cooldown_s")


def _values(kind: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in kind)


def _check_keys(
    table: Mapping[str, Any], allowed: Mapping[str, tuple[type, ...]], where: str
) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"unknown key '{where}.{key}'")
        types = allowed[key]
        if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"'{where}.{key}' must be {names}")


def _check_url(url: str, where: str, key: str = "url") -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"'{where}.{key}' is not an http(s) URL: {url!r}")
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ConfigError(f"'{where}.{key}' has a bad port: {url!r}") from exc


def _positive(table: Mapping[str, Any], key: str, where: str) -> None:
    if key in table and table[key] <= 0:
        raise ConfigError(f"'{where}.{key}' must be greater than 0")


def _parse_source(raw: Mapping[str, Any], index: int, env: Mapping[str, str]) -> SourceConfig:
    where = f"sources[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"'{where}' must be a table")
    if isinstance(raw.get("id"), str) and raw["id"].strip():
        where = f"sources.{raw['id']}"
    _check_keys(raw, _SOURCE_KEYS, where)
    if "id" not in raw or not raw["id"].strip():
        raise ConfigError(f"'{where}.id' is required")
    kinds = ", ".join(_values(SourceKind))
    if "kind" not in raw:
        raise ConfigError(f"'{where}.kind' is required (one of {kinds})")
    if raw["kind"] not in _values(SourceKind):
        raise ConfigError(f"'{where}.kind' is {raw['kind']!r}, expected one of {kinds}")
    kind = SourceKind(raw["kind"])
    for key in kind.required:
        if key not in raw:
            raise ConfigError(f"'{where}.{key}' is required for kind {kind.value!r}")
    values: dict[str, Any] = {key: raw[key] for key in _AS_IS if key in raw}
    values |= {key: float(raw[key]) for key in _FLOATS if key in raw}
    if "url" in raw:
        _check_url(raw["url"], where)
        values["url"] = raw["url"].rstrip("/") or None
    if "dialect" in raw:
        if raw["dialect"] not in _values(Dialect):
            raise ConfigError(
                f"'{where}.dialect' is {raw['dialect']!r},"
                f" expected one of {', '.join(_values(Dialect))}"
            )
        values["dialect"] = Dialect(raw["dialect"])
    if "auth" in raw:
        if raw["auth"] not in _values(SourceAuth):
            raise ConfigError(
                f"'{where}.auth' is {raw['auth']!r},"
                f" expected one of {', '.join(_values(SourceAuth))}"
            )
        values["auth"] = SourceAuth(raw["auth"])
    elif "username" in raw:
        values["auth"] = SourceAuth.BASIC  # a username alone means basic auth
    if values.get("auth") == SourceAuth.BEARER and "token_url" not in raw:
        raise ConfigError(f"'{where}.token_url' is required when auth is 'bearer'")
    if "roles" in raw:
        for role in raw["roles"]:
            if role not in _values(SourceRole):
                raise ConfigError(
                    f"'{where}.roles' has {role!r},"
                    f" expected some of {', '.join(_values(SourceRole))}"
                )
        values["roles"] = tuple(SourceRole(r) for r in raw["roles"])
    if "port" in raw and not 0 < raw["port"] < 65536:
        raise ConfigError(f"'{where}.port' must be between 1 and 65535")
    for key in ("timeout_s", "connect_timeout_s", "max_concurrency", "breaker_threshold"):
        _positive(raw, key, where)
    password = _secret(raw, "password_env", where, env)
    client_secret = _secret(raw, "client_secret_env", where, env)
    return SourceConfig(
        id=raw["id"],
        kind=kind,
        name=raw.get("name", raw["id"]),
        password=password,
        client_secret=client_secret,
        **values,
    )


def _secret(raw: Mapping[str, Any], key: str, where: str, env: Mapping[str, str]) -> str | None:
    name = raw.get(key)
    if name is None:
        return None
    if name not in env:
        raise ConfigError(f"'{where}.{key}' names ${name}, which is not set")
    return env[name]


def parse_settings(
    data: Mapping[str, Any], env: Mapping[str, str], config_path: Path | None = None
) -> Settings:
    """Validate a parsed TOML document and resolve it against `env`."""
    for key in data:
        if key not in (
            "gateway",
            "sources",
            "sync",
            "auth",
            "metrics",
            "logging",
            "telemetry",
            "import",
            "dicomweb",
        ):
            raise ConfigError(f"unknown key '{key}'")
    gw = data.get("gateway", {})
    _check_keys(gw, _GATEWAY_KEYS, "gateway")
    if "sync_interval_s" in gw and gw["sync_interval_s"] < 0:
        raise ConfigError("'gateway.sync_interval_s' must be 0 (off) or more")
    if "rtstruct_poll_s" in gw and gw["rtstruct_poll_s"] <= 0:
        raise ConfigError("'gateway.rtstruct_poll_s' must be more than 0")
    if "index_interval_s" in gw and gw["index_interval_s"] < 0:
        raise ConfigError("'gateway.index_interval_s' must be 0 (off) or more")
    for key in ("index_freshness_s", "index_reconcile_s"):
        _positive(gw, key, "gateway")
    raw_sources = data.get("sources", [])
    if not isinstance(raw_sources, list):
        raise ConfigError("'sources' must be an array of tables ([[sources]])")
    sources = tuple(_parse_source(raw, i, env) for i, raw in enumerate(raw_sources))
    seen: set[str] = set()
    for s in sources:
        if s.id in seen:
            raise ConfigError(f"duplicate source id 'sources.{s.id}'")
        seen.add(s.id)
    pairs = []
    for i, raw in enumerate(data.get("sync", [])):
        _check_keys(raw, {"from": (str,), "to": (str,)}, f"sync[{i}]")
        for key in ("from", "to"):
            if key not in raw:
                raise ConfigError(f"'sync[{i}].{key}' is required")
            if raw[key] not in seen:
                raise ConfigError(f"'sync[{i}].{key}' names unknown source {raw[key]!r}")
        pairs.append(SyncPair(source=raw["from"], destination=raw["to"]))
    values: dict[str, Any] = {
        key: gw[key]
        for key in ("deid_key_env", "mapping_key_env", "cursor_key_env", "rtstruct_auto")
        if key in gw
    }
    floats = ("sync_interval_s", "rtstruct_poll_s", "index_interval_s", "index_freshness_s")
    values |= {key: float(gw[key]) for key in (*floats, "index_reconcile_s") if key in gw}
    if "allowed_hosts" in gw:
        if not all(isinstance(h, str) and h for h in gw["allowed_hosts"]):
            raise ConfigError("'gateway.allowed_hosts' must be a list of host names")
        values["allowed_hosts"] = tuple(gw["allowed_hosts"])
    if "max_body_bytes" in gw:
        _positive(gw, "max_body_bytes", "gateway")
        values["max_body_bytes"] = gw["max_body_bytes"]
    if "max_query_cost" in gw:
        _positive(gw, "max_query_cost", "gateway")
        values["max_query_cost"] = gw["max_query_cost"]
    if "max_fields" in gw:
        _positive(gw, "max_fields", "gateway")
        values["max_fields"] = gw["max_fields"]
    for key in (
        "rate_per_s",
        "time_per_s",
        "max_queued_jobs_per_user",
        "max_concurrent_per_caller",
    ):
        if key in gw and gw[key] < 0:
            raise ConfigError(f"'gateway.{key}' must be 0 (off) or more")
    for key in ("rate_per_s", "time_per_s"):
        if key in gw:
            values[key] = float(gw[key])
    if "time_burst_s" in gw:
        _positive(gw, "time_burst_s", "gateway")
        values["time_burst_s"] = float(gw["time_burst_s"])
    for key in ("max_queued_jobs_per_user", "max_concurrent_per_caller"):
        if key in gw:
            values[key] = gw[key]
    if "burst" in gw:
        _positive(gw, "burst", "gateway")
        values["burst"] = gw["burst"]
    if "results_dir" in gw:
        values["results_dir"] = Path(gw["results_dir"])
    if env.get("DATABASE_URL"):
        values["database_url"] = normalize_database_url(env["DATABASE_URL"])
    if env.get("REDIS_URL"):
        values["redis_url"] = env["REDIS_URL"]
    values["auth"] = _parse_auth(data.get("auth", {}), env)
    values["metrics"] = _parse_metrics(data.get("metrics", {}))
    values["logging"] = _parse_logging(data.get("logging", {}))
    values["telemetry"] = _parse_telemetry(data.get("telemetry", {}))
    values["imports"] = _parse_import(data.get("import", {}))
    values["dicomweb"] = _parse_dicomweb(data.get("dicomweb", {}), seen)
    settings = Settings(sources=sources, sync=tuple(pairs), config_path=config_path, **values)
    # The keys themselves come from the variables the settings name.
    return replace(
        settings,
        deid_key=env.get(settings.deid_key_env) or None,
        mapping_key=env.get(settings.mapping_key_env) or None,
        cursor_key=env.get(settings.cursor_key_env) or None,
    )


def _parse_auth(raw: Any, env: Mapping[str, str]) -> AuthConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("'auth' must be a table")
    _check_keys(raw, _AUTH_KEYS, "auth")
    if "mode" in raw and raw["mode"] not in _values(AuthMode):
        raise ConfigError(
            f"'auth.mode' is {raw['mode']!r}, expected one of {', '.join(_values(AuthMode))}"
        )
    for key in ("session_ttl_s", "lockout_failures", "lockout_s"):
        _positive(raw, key, "auth")
    if "oidc_issuer" in raw:
        _check_url(raw["oidc_issuer"], "auth", key="oidc_issuer")
    if "audit_syslog" in raw:
        syslog = urlparse(raw["audit_syslog"])
        if syslog.scheme != "udp" or not syslog.hostname:
            raise ConfigError(
                f"'auth.audit_syslog' is not udp://host:port: {raw['audit_syslog']!r}"
            )
    if not 0 <= raw.get("audit_syslog_facility", 10) <= 23:
        raise ConfigError("'auth.audit_syslog_facility' must be 0 to 23")
    if ("oidc_issuer" in raw) != ("oidc_audience" in raw):
        raise ConfigError("'auth.oidc_issuer' and 'auth.oidc_audience' go together")
    if "oidc_client_id" in raw and ("oidc_issuer" not in raw or not raw["oidc_client_id"]):
        raise ConfigError("'auth.oidc_client_id' needs 'auth.oidc_issuer' and is not empty")
    for key in ("oidc_client_secret_env", "oidc_scopes"):
        if key in raw and "oidc_client_id" not in raw:
            raise ConfigError(f"'auth.{key}' needs 'auth.oidc_client_id'")
    if "oidc_scopes" in raw and "openid" not in raw["oidc_scopes"].split():
        raise ConfigError("'auth.oidc_scopes' must include 'openid'")
    floats = {k: float(raw[k]) for k in ("session_ttl_s", "lockout_s", "token_cache_s") if k in raw}
    secret = _secret(raw, "oidc_client_secret_env", "auth", env)
    return AuthConfig(**{**raw, **floats}, oidc_client_secret=secret)


def _parse_metrics(raw: Any) -> MetricsConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("'metrics' must be a table")
    _check_keys(raw, _METRICS_KEYS, "metrics")
    values: dict[str, Any] = {k: raw[k] for k in ("enabled", "worker_host") if k in raw}
    if "allow" in raw:
        networks = []
        for entry in raw["allow"]:
            try:
                networks.append(ipaddress.ip_network(str(entry), strict=False))
            except ValueError:
                raise ConfigError(
                    f"'metrics.allow' has {str(entry)[:64]!r}, not an address or CIDR"
                ) from None
        values["allow"] = tuple(networks)
    if "worker_port" in raw:
        if not 0 <= raw["worker_port"] < 65536:
            raise ConfigError("'metrics.worker_port' must be between 0 (off) and 65535")
        values["worker_port"] = raw["worker_port"]
    if "health_check_min_s" in raw:
        if raw["health_check_min_s"] < 0:
            raise ConfigError("'metrics.health_check_min_s' must be 0 or more")
        values["health_check_min_s"] = float(raw["health_check_min_s"])
    return MetricsConfig(**values)


def _parse_logging(raw: Any) -> LoggingConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("'logging' must be a table")
    _check_keys(raw, {"format": (str,), "level": (str,)}, "logging")
    if "format" in raw and raw["format"] not in _values(LogFormat):
        raise ConfigError(
            f"'logging.format' is {raw['format'][:16]!r}, expected one of "
            f"{', '.join(_values(LogFormat))}"
        )
    level = str(raw.get("level", "INFO")).upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"'logging.level' must be one of {', '.join(LOG_LEVELS)}")
    return LoggingConfig(format=LogFormat(raw.get("format", "text")), level=level)


def _parse_telemetry(raw: Any) -> TelemetryConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("'telemetry' must be a table")
    _check_keys(raw, {"otlp_endpoint": (str,), "service_name": (str,)}, "telemetry")
    if "otlp_endpoint" in raw:
        _check_url(raw["otlp_endpoint"], "telemetry", key="otlp_endpoint")
    if "service_name" in raw and not raw["service_name"].strip():
        raise ConfigError("'telemetry.service_name' must not be empty")
    return TelemetryConfig(**raw)


_IMPORT_KEYS: dict[str, tuple[type, ...]] = {
    "max_bytes": (int,),
    "max_unpacked_bytes": (int,),
    "max_files": (int,),
    "max_ratio": (int, float),
    "spool_keep_s": (int, float),
}


def _parse_import(raw: Any) -> ImportConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("'import' must be a table")
    _check_keys(raw, _IMPORT_KEYS, "import")
    for key in _IMPORT_KEYS:
        _positive(raw, key, "import")
    floats = {k: float(raw[k]) for k in ("max_ratio", "spool_keep_s") if k in raw}
    return ImportConfig(**{**raw, **floats})


def _parse_dicomweb(raw: Any, sources: set[str]) -> DicomwebConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("'dicomweb' must be a table")
    _check_keys(raw, {"enabled": (bool,), "default_store": (str,)}, "dicomweb")
    if "default_store" in raw and raw["default_store"] not in sources:
        raise ConfigError(f"'dicomweb.default_store' names unknown source {raw['default_store']!r}")
    return DicomwebConfig(**raw)


def normalize_database_url(url: str) -> str:
    """Pick the async driver for a plain `postgresql://` or `sqlite://` URL."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the config file named by `path` or `$GATEWAY_CONFIG` (default gateway.toml)."""
    env = dict(os.environ) if env is None else env
    config = Path(path or env.get("GATEWAY_CONFIG") or "gateway.toml")
    try:
        text = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {config}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {config}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config}: invalid TOML: {exc}") from None
    return parse_settings(data, env, config_path=config)


def service_urls_from_env(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """(`REDIS_URL`, `DATABASE_URL`) from the environment, before any config exists."""
    env = os.environ if env is None else env
    return env.get("REDIS_URL") or None, env.get("DATABASE_URL") or None
