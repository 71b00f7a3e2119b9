"""Session fixtures: the real local PACS stack, started once per test run.

A server that cannot start fails the run; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.core.settings import Settings, load_settings
from gateway.db.engine import migrate
from gateway.devstack.seed import GroundTruth, build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.devstack.stack import LocalStack, StackInfo
from gateway.server.app import create_app
from tests.jobs_support import WorkerProcess, drop_database


def _running_stack(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    database: str = "pacs_gateway_test",
    research: bool = False,
) -> Iterator[LocalStack]:
    stack = LocalStack(
        workdir=tmp_path_factory.mktemp(name),
        redis_url=os.environ.get("REDIS_URL"),
        database_url=os.environ.get("DATABASE_URL"),
        database_name=database,
        research=research,
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The running stack object (for fault tests that stop a server)."""
    yield from _running_stack(tmp_path_factory, "stack")


@pytest.fixture(scope="session")
def stack(local_stack: LocalStack) -> StackInfo:
    """Where the stack's servers listen."""
    assert local_stack.info is not None
    return local_stack.info


@pytest.fixture(scope="session")
def gateway_toml(
    stack: StackInfo, tmp_path_factory: pytest.TempPathFactory, auth_mode="open"
) -> Path:
    """A gateway.toml pointing at the stack."""
    path = tmp_path_factory.mktemp("config") / "gateway.toml"
    results = tmp_path_factory.mktemp("results")
    path.write_text(
        stack.gateway_toml(results_dir=str(results), sync_interval_s=0, auth_mode="open")
    )
    return path


@pytest.fixture(scope="session")
def settings(stack: StackInfo, gateway_toml: Path) -> Settings:
    """Settings for the stack, on the stack's Redis and PostgreSQL."""
    env = {"DATABASE_URL": stack.database_url, "REDIS_URL": stack.redis_url}
    return load_settings(gateway_toml, env=env)


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of the module's own (0.3 s to start), for tests that write or stop servers."""
    yield from _running_stack(tmp_path_factory, "private-stack")


@pytest.fixture(scope="session")
def truth(settings: Settings) -> GroundTruth:
    """The session stack, seeded once with the deterministic demo data (seed 42, 20 patients)."""
    counts = asyncio.run(seed_archives(settings, 42, 20, None))
    plan_truth = build_demo(seed=42, patients=20, sources=settings.ids_with_role("store")).truth
    assert counts == plan_truth.instance_counts, "every archive must accept all its demo files"
    return plan_truth


@dataclass
class JobEnv:
    """A private stack for job tests: its own database (dropped after), config, worker, client."""

    stack: LocalStack
    settings: Settings
    config: Path
    env: dict[str, str]
    workdir: Path

    def worker(self, name: str = "worker") -> WorkerProcess:
        """A worker process for this stack (not started)."""
        return WorkerProcess(self.config, self.env, self.workdir / f"{name}.log")

    def client(self) -> TestClient:
        """An in-process gateway (use as a context manager)."""
        return TestClient(create_app(self.settings))


@pytest.fixture(scope="module")
def job_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobEnv]:
    """A module's own stack and database: jobs of one module never reach another's workers."""
    workdir = tmp_path_factory.mktemp("jobs")
    database = f"pacs_gw_jobs_{os.getpid()}_{workdir.name.replace('-', '_')}"
    for stack in _running_stack(tmp_path_factory, "job-stack", database, research=True):
        info = stack.info
        assert info is not None
        config = workdir / "gateway.toml"
        config.write_text(
            info.gateway_toml(
                results_dir=str(workdir / "results"), sync_interval_s=0, auth_mode="open"
            )
        )
        env = {
            "DATABASE_URL": info.database_url,
            "REDIS_URL": info.redis_url,
            "GATEWAY_DEID_KEY": "test-deid-key-not-secret",
            "GATEWAY_MAPPING_KEY": base64.b64encode(b"k" * 32).decode(),
        }
        settings = load_settings(config, env=env)
        asyncio.run(migrate(settings.database_url))
        try:
            yield JobEnv(stack, settings, config, env, workdir)
        finally:
            drop_database(info.database_url)
