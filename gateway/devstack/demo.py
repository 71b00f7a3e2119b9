"""`pacs-gateway demo` and `pacs-gateway stack`: the local stack for people, not tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway.auth.service import AuthService
from gateway.core.enums import Role
from gateway.core.settings import Settings, load_settings, service_urls_from_env
from gateway.db.engine import make_engine, migrate, sessionmaker
from gateway.devstack.seed.archives import seed_archives
from gateway.devstack.stack import LocalStack, StackInfo, die_with_parent


def _start_stack() -> tuple[LocalStack, StackInfo]:
    redis_url, database_url = service_urls_from_env()
    stack = LocalStack(
        redis_url=redis_url,
        database_url=database_url,
        database_name="pacs_gateway",
        research=True,
    )
    info = stack.start()
    return stack, info


def _write_config(info: StackInfo, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    results = path.parent / "results"
    path.write_text(info.gateway_toml(results_dir=str(results.resolve())), encoding="utf-8")
    return path


def _env(info: StackInfo) -> dict[str, str]:
    return {"DATABASE_URL": info.database_url, "REDIS_URL": info.redis_url}


def run_stack(config_out: Path) -> int:
    """Start the stack, write its config, wait for Ctrl-C."""
    stack, info = _start_stack()
    try:
        path = _write_config(info, config_out)
        print(f"stack up; config written to {path}")
        print(f"  export DATABASE_URL={info.database_url} REDIS_URL={info.redis_url}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    finally:
        stack.stop()
    return 0


def _wait_http(url: str, timeout: float = 60.0) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def _demo_keys(workdir: Path) -> dict[str, str]:
    """De-identification keys for the demo, kept in the workdir so pseudonyms stay stable.

    Only used when the environment does not set them; never for production.
    """
    import base64
    import json
    import secrets

    path = workdir / "demo-keys.json"
    if not path.exists():
        keys = {
            "GATEWAY_DEID_KEY": secrets.token_urlsafe(32),
            "GATEWAY_MAPPING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        path.write_text(json.dumps(keys))
        path.chmod(0o600)
    keys_read: dict[str, str] = json.loads(path.read_text())
    return keys_read


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


DEMO_USERS = {"admin": Role.ADMIN, "radiologist": Role.RADIOLOGIST, "researcher": Role.RESEARCHER}


async def demo_users(settings: Settings) -> dict[str, str]:
    """The demo's three users, each with a password made for this run (name -> password)."""
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    service = AuthService(sessionmaker(engine), settings.auth)
    out: dict[str, str] = {}
    try:
        for name, role in DEMO_USERS.items():
            password = secrets.token_urlsafe(12)
            user = await service.user_by_name(name)
            if user is None:
                await service.create_user(name, [role], "demo", password=password)
            else:
                await service.set_password(user.id, password, "demo")
            out[name] = password
    finally:
        await engine.dispose()
    return out


def run_demo(host: str, port: int, patients: int, seed_value: int, workdir: Path) -> int:
    """Stack, demo data, one worker and the gateway; Ctrl-C (or SIGTERM) stops every process."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    stack, info = _start_stack()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = _write_config(info, workdir / "gateway.toml")
        env = _env(info)
        settings = load_settings(config, env=env)
        print(f"seeding {patients} patients into {', '.join(s.id for s in settings.sources)} ...")
        counts = asyncio.run(seed_archives(settings, seed_value, patients, workdir / "truth.json"))
        print("seeded: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        logins = asyncio.run(demo_users(settings))
        child_env = {**_demo_keys(workdir), **os.environ, **env}
        cli = [sys.executable, "-m", "gateway.server.cli"]
        procs.append(
            subprocess.Popen(
                [*cli, "worker", "--config", str(config)],
                env=child_env,
                preexec_fn=die_with_parent,
                process_group=0,  # Ctrl-C reaches this process only; it stops them
            )
        )
        procs.append(
            subprocess.Popen(
                [*cli, "serve", "--config", str(config), "--host", host, "--port", str(port)],
                env=child_env,
                preexec_fn=die_with_parent,
                process_group=0,  # Ctrl-C reaches this process only; it stops them
            )
        )
        if _wait_http(f"http://{host}:{port}/health"):
            base = f"http://{host}:{port}"
            print(
                f"\n  Dashboard: {base}/\n  GraphiQL:  {base}/graphql (the dashboard's login)"
                f"\n  Viewer:    {base}/viewer/ (OHIF, the dashboard's login)"
                f"\n  DICOMweb:  {base}/dicomweb (every archive as one)"
                f"\n  Health:    {base}/health"
            )
            print("  Log in (passwords made for this run):")
            for name, password in logins.items():
                print(f"    {name:<12} {password}")
            print(
                "  Scripts: mutation { login(username: ..., password: ...) { token } }, then\n"
                '  the header {"Authorization": "Bearer <token>"} (see docs/clients.md).\n'
                "  Ctrl-C stops everything.\n"
            )
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.poll() is None for p in procs):
                time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        stack.stop()
    return 0
