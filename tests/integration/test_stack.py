"""The local stack starts real servers and leaves no orphan process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil

from gateway.devstack.stack import LocalStack, StackInfo, port_open

CHILD = """
import json, sys, time
from gateway.devstack.stack import LocalStack
stack = LocalStack()
info = stack.start()
pids = [s.proc.pid for s in stack.services.values()]
print(json.dumps({"pids": pids, "port": info.legacy_port}), flush=True)
time.sleep(600)
"""


def test_stack_serves_every_archive(stack: StackInfo) -> None:
    assert httpx.get(f"{stack.orthanc_url}/system").json()["Name"] == "orthanc"
    assert httpx.get(f"{stack.dcm4chee_rest}/system").json()["Name"] == "dcm4chee"
    assert httpx.get(f"{stack.dcm4chee_url}/studies").status_code in (200, 204)
    assert port_open("127.0.0.1", stack.legacy_port)


def test_killed_parent_leaves_no_orphans() -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    pids = info["pids"]
    assert all(psutil.pid_exists(p) for p in pids)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        time.sleep(0.2)
    assert alive == []
    assert not port_open("127.0.0.1", info["port"])


def test_stop_is_clean_and_removes_temporary_storage() -> None:
    stack = LocalStack()
    stack.start()
    workdir = stack.workdir
    pids = [s.proc.pid for s in stack.services.values() if s.proc]
    stack.stop()
    assert not workdir.exists()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)


def test_stop_ends_the_servers_forked_children() -> None:
    """dcmqrscp forks one child per association; none may outlive stop()."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    stack = LocalStack()
    info = stack.start()
    ae = AE(ae_title="TEST")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", info.legacy_port, ae_title="DCMQRSCP")
    try:
        assert assoc.is_established
        legacy = stack.services["legacy"].proc
        assert legacy is not None
        deadline = time.monotonic() + 5
        children = psutil.Process(legacy.pid).children()
        while not children and time.monotonic() < deadline:  # it forks right after accepting
            time.sleep(0.05)
            children = psutil.Process(legacy.pid).children()
        assert children, "dcmqrscp serves the association in a forked child"
        stack.stop()

        def alive() -> list[psutil.Process]:
            out = []
            for c in children:
                try:
                    if c.is_running() and c.status() != "zombie":
                        out.append(c)
                except psutil.NoSuchProcess:
                    pass
            return out

        deadline = time.monotonic() + 5
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive()
        assert not port_open("127.0.0.1", info.legacy_port)
    finally:
        assoc.abort()
        ae.shutdown()
        stack.stop()
