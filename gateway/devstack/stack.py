"""The local PACS stack shared by `make demo` and the tests.

Starts, on loopback and free ports with temporary storage:

- Orthanc "orthanc" (REST + DICOMweb, DICOM port on);
- Orthanc "dcm4chee", its DICOMweb root at /dcm4chee-arc/aets/DCM4CHEE/rs/;
- dcmtk `dcmqrscp` "legacy", DIMSE only;
- optionally Orthanc "research", a research archive (role "research") that
  de-identified studies go to;
- Redis and PostgreSQL, unless reachable ones are given or found.

Children get PR_SET_PDEATHSIG, so they die with the process that started them
even when it is killed; `stop()` terminates them in order. Each server runs in
a process group of its own, and whatever it forked (dcmqrscp forks one child
per association) is killed with its group once the server itself has exited.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "local"
DCM4CHEE_ROOT = "/dcm4chee-arc/aets/DCM4CHEE/rs/"
ORTHANC_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A server of the local stack could not be started."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _own_group_dying_with_parent() -> None:
    os.setpgid(0, 0)
    die_with_parent()


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group (children of a server that exited)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass
class Service:
    """One server process the stack started."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process, its output going to its log file."""
        env = {**os.environ, **self.env}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_own_group_dying_with_parent,
                user=self.user,
            )

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process, killing it if it does not exit in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        _kill_group(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the process and its group (for fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None:
            _kill_group(self.proc.pid)

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        """The end of the log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class StackInfo:
    """Where the servers of a started stack listen."""

    workdir: Path
    orthanc_http: int
    orthanc_dicom: int
    dcm4chee_http: int
    dcm4chee_dicom: int
    legacy_port: int
    redis_url: str
    database_url: str
    research_http: int | None = None

    @property
    def orthanc_url(self) -> str:
        """Orthanc REST root."""
        return f"http://127.0.0.1:{self.orthanc_http}"

    @property
    def dcm4chee_url(self) -> str:
        """The DCM4CHEE-style DICOMweb root."""
        return f"http://127.0.0.1:{self.dcm4chee_http}{DCM4CHEE_ROOT.rstrip('/')}"

    @property
    def dcm4chee_rest(self) -> str:
        """The REST root of the Orthanc that plays DCM4CHEE (for direct checks)."""
        return f"http://127.0.0.1:{self.dcm4chee_http}"

    @property
    def research_url(self) -> str | None:
        """REST root of the research Orthanc, when the stack has one."""
        return f"http://127.0.0.1:{self.research_http}" if self.research_http else None

    def gateway_toml(
        self, results_dir: str = "var/results", sync_interval_s: int = 60, auth_mode: str = ""
    ) -> str:
        """A gateway.toml pointing at this stack (`auth_mode` "open": no login, loopback)."""
        auth = f'\n[auth]\nmode = "{auth_mode}"\n' if auth_mode else ""
        return self._clinical_toml(results_dir, sync_interval_s) + self._research_toml() + auth

    def _research_toml(self) -> str:
        if not self.research_url:
            return ""
        return f"""
[[sources]]
id = "research"
name = "Research archive"
kind = "orthanc"
url = "{self.research_url}"
roles = ["research"]
timeout_s = 5
"""

    def _clinical_toml(self, results_dir: str, sync_interval_s: int) -> str:
        return f"""# Written by `pacs-gateway` for the local stack in {self.workdir}
[gateway]
sync_interval_s = {sync_interval_s}
results_dir = "{results_dir}"
# loopback names, and Starlette's test client's host name for the tests
allowed_hosts = ["localhost", "127.0.0.1", "::1", "testserver"]

[[sync]]
from = "dcm4chee"
to = "orthanc"

[[sources]]
id = "orthanc"
name = "Orthanc"
kind = "orthanc"
url = "{self.orthanc_url}"
roles = ["query", "retrieve", "store"]
timeout_s = 5

[[sources]]
id = "dcm4chee"
name = "DCM4CHEE"
kind = "dicomweb"
dialect = "dcm4chee"
url = "{self.dcm4chee_url}"
roles = ["query", "retrieve", "store"]
timeout_s = 5

[[sources]]
id = "legacy"
name = "Legacy DIMSE archive"
kind = "dimse"
host = "127.0.0.1"
port = {self.legacy_port}
called_aet = "DCMQRSCP"
calling_aet = "PACSGW"
roles = ["query", "retrieve", "store"]
timeout_s = 5
"""


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait(check: object, what: str, service: Service | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        if service is not None and service.proc is not None and service.proc.poll() is not None:
            raise StackError(f"{what} exited at start:\n{service.tail()}")
        time.sleep(0.1)
    tail = service.tail() if service else ""
    raise StackError(f"{what} did not become ready in {timeout:.0f}s\n{tail}")


def redis_reachable(url: str) -> bool:
    """True when a Redis server answers PING at `url`."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def postgres_reachable(url: str) -> bool:
    """True when a PostgreSQL server accepts a connection at `url`."""
    parsed = urlparse(url)
    return port_open(parsed.hostname or "127.0.0.1", parsed.port or 5432)


class LocalStack:
    """Start and stop the local servers. Use as a context manager."""

    def __init__(
        self,
        workdir: Path | None = None,
        redis_url: str | None = None,
        database_url: str | None = None,
        database_name: str = "pacs_gateway",
        legacy_peers: dict[str, tuple[str, int]] | None = None,
        research: bool = False,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="pacs-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.database_url = database_url
        self.database_name = database_name
        self.legacy_peers = legacy_peers or {}
        self.research = research
        self.services: dict[str, Service] = {}
        self.info: StackInfo | None = None

    def __enter__(self) -> StackInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- servers -------------------------------------------------------------

    def _orthanc(self, name: str, aet: str, http: int, dicom: int, root: str) -> Service:
        base = json.loads((DEPLOY_DIR / "orthanc.json").read_text())
        home = self.workdir / name
        (home / "db").mkdir(parents=True, exist_ok=True)
        base.update(
            Name=name,
            StorageDirectory=str(home / "db"),
            IndexDirectory=str(home / "db"),
            HttpPort=http,
            DicomPort=dicom,
            DicomAet=aet,
        )
        base["DicomWeb"]["Root"] = root
        base["Plugins"] = [str(ORTHANC_PLUGIN)]
        cfg = home / "orthanc.json"
        cfg.write_text(json.dumps(base, indent=2))
        # Orthanc's DICOM side is dcmtk: without TCP_NODELAY each DIMSE message stalls ~40 ms.
        return Service(name, ["Orthanc", str(cfg)], home / "orthanc.log", env={"TCP_NODELAY": "1"})

    def _dcmqrscp(self, port: int) -> Service:
        home = self.workdir / "legacy"
        storage = home / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        peers = "\n".join(
            f"{aet} = ({aet}, {host}, {p})" for aet, (host, p) in self.legacy_peers.items()
        )
        text = (DEPLOY_DIR / "dcmqrscp.cfg").read_text()
        cfg = home / "dcmqrscp.cfg"
        cfg.write_text(text.format(port=port, storage=storage, peers=peers))
        # Not --single-process: dcmqrscp 3.6.7 (Debian 3.6.7-9~deb12u4) segfaults in
        # DUL_DropAssociation after the first association in that mode.
        argv = ["dcmqrscp", "--disable-host-lookup", "-c", str(cfg), str(port)]
        return Service("legacy", argv, home / "dcmqrscp.log", env={"TCP_NODELAY": "1"})

    def _redis(self) -> tuple[str, Service | None]:
        candidates = [self.redis_url] if self.redis_url else ["redis://127.0.0.1:6379/0"]
        for url in candidates:
            if url and redis_reachable(url):
                return url, None
        if self.redis_url:
            raise StackError(
                f"REDIS_URL is set but no Redis answers at {urlparse(self.redis_url).netloc}"
            )
        if not shutil.which("redis-server"):
            raise StackError("redis-server is not installed (run `make setup`)")
        port = free_port()
        home = self.workdir / "redis"
        home.mkdir(exist_ok=True)
        argv = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(home),
        ]
        return f"redis://127.0.0.1:{port}/0", Service("redis", argv, home / "redis.log")

    def _postgres(self) -> tuple[str, Service | None]:
        if self.database_url:
            if not postgres_reachable(self.database_url):
                raise StackError("DATABASE_URL is set but no PostgreSQL answers there")
            return self.database_url, None
        default = "postgresql://postgres@127.0.0.1:5432/postgres"
        if postgres_reachable(default):
            return _ensure_database(default, self.database_name), None
        return self._own_postgres()

    def _own_postgres(self) -> tuple[str, Service | None]:
        bindir = _pg_bindir()
        port = free_port()
        home = self.workdir / "postgres"
        home.mkdir(exist_ok=True)
        user = "postgres" if os.geteuid() == 0 else None
        if user:
            shutil.chown(home, user)
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(home / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            user=user,
        )
        argv = [
            str(bindir / "postgres"),
            "-D",
            str(home / "data"),
            "-p",
            str(port),
            "-k",
            str(home),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ]
        svc = Service("postgres", argv, Path(tempfile.gettempdir()) / f"pg-{port}.log", user=user)
        return f"postgresql://postgres@127.0.0.1:{port}/postgres", svc

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> StackInfo:
        """Start every server and wait until each answers."""
        for tool in ("Orthanc", "dcmqrscp"):
            if not shutil.which(tool):
                raise StackError(f"{tool} is not installed (run `make setup`)")
        if not ORTHANC_PLUGIN.exists():
            raise StackError("Orthanc's DICOMweb plugin is missing (run `make setup`)")
        ports = {k: free_port() for k in ("oh", "od", "dh", "dd", "lg", "rh", "rd")}
        try:
            self.services["orthanc"] = self._orthanc(
                "orthanc", "ORTHANC", ports["oh"], ports["od"], "/dicom-web/"
            )
            self.services["dcm4chee"] = self._orthanc(
                "dcm4chee", "DCM4CHEE", ports["dh"], ports["dd"], DCM4CHEE_ROOT
            )
            self.services["legacy"] = self._dcmqrscp(ports["lg"])
            if self.research:
                self.services["research"] = self._orthanc(
                    "research", "RESEARCH", ports["rh"], ports["rd"], "/dicom-web/"
                )
            redis_url, redis_svc = self._redis()
            if redis_svc:
                self.services["redis"] = redis_svc
            db_url, pg_svc = self._postgres()
            if pg_svc:
                self.services["postgres"] = pg_svc
            for svc in self.services.values():
                svc.start()
            self.info = StackInfo(
                workdir=self.workdir,
                orthanc_http=ports["oh"],
                orthanc_dicom=ports["od"],
                dcm4chee_http=ports["dh"],
                dcm4chee_dicom=ports["dd"],
                legacy_port=ports["lg"],
                redis_url=redis_url,
                database_url=db_url,
                research_http=ports["rh"] if self.research else None,
            )
            self.wait_ready()
            if pg_svc:
                self.info.database_url = _ensure_database(db_url, self.database_name)
        except BaseException:
            self.stop()
            raise
        return self.info

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until every started server answers."""
        assert self.info is not None
        info = self.info
        checks = {
            "orthanc": lambda: _http_ok(f"{info.orthanc_url}/system"),
            "dcm4chee": lambda: _http_ok(f"{info.dcm4chee_rest}/system"),
            "legacy": lambda: port_open("127.0.0.1", info.legacy_port),
            "research": lambda: _http_ok(f"{info.research_url}/system"),
            "redis": lambda: redis_reachable(info.redis_url),
            "postgres": lambda: postgres_reachable(info.database_url),
        }
        for name, svc in self.services.items():
            _wait(checks[name], name, svc, timeout)

    def stop_service(self, name: str) -> None:
        """Stop one server (fault tests); `start_service` brings it back."""
        self.services[name].stop()

    def start_service(self, name: str) -> None:
        """Restart a server stopped with `stop_service`, same ports and data."""
        svc = self.services[name]
        if not svc.running:
            svc.start()
            self.wait_ready()

    def stop(self) -> None:
        """Stop every server in reverse start order; remove a temporary workdir."""
        services = list(reversed(list(self.services.values())))
        for svc in services:
            if svc.running and svc.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    svc.proc.terminate()
        for svc in services:
            with contextlib.suppress(Exception):
                svc.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _pg_bindir() -> Path:
    base = Path("/usr/lib/postgresql")
    versions = sorted(base.glob("*/bin/postgres")) if base.exists() else []
    if not versions:
        raise StackError("PostgreSQL is not installed (run `make setup`)")
    return versions[-1].parent


def _ensure_database(url: str, name: str) -> str:
    """Create database `name` on the server at `url` if needed; return its URL."""
    parsed = urlparse(url)
    env = {**os.environ, "PGCONNECT_TIMEOUT": "5"}
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    base = [
        "psql",
        "-h",
        parsed.hostname or "127.0.0.1",
        "-p",
        str(parsed.port or 5432),
        "-U",
        parsed.username or "postgres",
        "-d",
        parsed.path.lstrip("/") or "postgres",
        "-tAc",
    ]
    exists = subprocess.run(
        [*base, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if exists.returncode != 0:
        raise StackError(f"cannot query PostgreSQL: {exists.stderr.strip()}")
    if exists.stdout.strip() != "1":
        subprocess.run(
            [*base, f'CREATE DATABASE "{name}"'], capture_output=True, env=env, check=True
        )
    return parsed._replace(path=f"/{name}").geturl()
