"""Storing and retrieving a 500-instance study streams, through every adapter.

500 instances of 512 KiB (256 MiB) go into each archive through `store` and
come back through `retrieve_study`; the process's peak RSS may grow by less
than 100 MB each way (holding the study would take 2.5 times that). Orthanc
REST, DICOMweb (the Orthanc playing DCM4CHEE) and DIMSE (dcmqrscp), each on
its own study in one private stack.
"""

from __future__ import annotations

import gc
import re
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import psutil
import pytest
import pytest_asyncio

from gateway.core.settings import SourceConfig
from gateway.devstack.stack import LocalStack
from gateway.sources.base import PacsSource
from gateway.sources.registry import build_source
from tests.integration.test_http_adapters import instance, uid

pytestmark = pytest.mark.integration

BIG_INSTANCES = 500
BIG_ROWS = 512  # 512 x 512 x 2 bytes = 512 KiB per instance, 256 MiB per study
LIMIT_MB = 100
ADAPTERS = ["orthanc", "dcm4chee", "dcmqrscp"]
STUDY_KEY = {"orthanc": "501", "dcm4chee": "502", "dcmqrscp": "503"}


class LazyStudy(Sequence[bytes]):
    """500 large instances of one study, each made only when it is read."""

    def __init__(self, study_key: str) -> None:
        self.study_key = study_key
        patient = ("BIG" + study_key, "Big^Study", "19600101", "O")
        study = (study_key, "20240101", "Big study", "BIG" + study_key)
        self._template = instance(patient, study, ("1", "CT", 1), 999999, rows=BIG_ROWS)
        self._marker = f".{study_key}.1.999999".encode()

    def __len__(self) -> int:
        return BIG_INSTANCES

    def __getitem__(self, index: int) -> bytes:  # type: ignore[override]
        if not 0 <= index < BIG_INSTANCES:
            raise IndexError(index)
        number = f".{self.study_key}.1.{100000 + index}".encode()  # same length as the marker
        return self._template.replace(self._marker, number)


class PeakRss:
    """Peak resident memory growth of this process while the block runs.

    Uses the kernel's high-water mark (reset through /proc/self/clear_refs)
    when possible, else samples RSS with psutil every 2 ms.
    """

    def __init__(self) -> None:
        self.growth_mb = 0.0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._peak = 0

    def __enter__(self) -> PeakRss:
        gc.collect()
        self._base = self._process.memory_info().rss
        self._hwm = _reset_hwm()
        if not self._hwm:
            self._peak = self._base
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        if self._hwm:
            self._peak = _read_hwm()
        else:
            self._stop.set()
            self._thread.join()
        self.growth_mb = (self._peak - self._base) / 2**20


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _read_hwm() > 0


def _read_hwm() -> int:
    found = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(found.group(1)) * 1024 if found else 0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sources(private_stack: LocalStack) -> AsyncIterator[dict[str, PacsSource]]:
    """One adapter of each kind on a private stack."""
    info = private_stack.info
    assert info is not None
    configs = [
        SourceConfig(id="orthanc", kind="orthanc", url=info.orthanc_url, timeout_s=30),
        SourceConfig(
            id="dcm4chee", kind="dicomweb", dialect="dcm4chee", url=info.dcm4chee_url, timeout_s=30
        ),
        SourceConfig(
            id="dcmqrscp",
            kind="dimse",
            host="127.0.0.1",
            port=info.legacy_port,
            called_aet="DCMQRSCP",
            timeout_s=30,
        ),
    ]
    built = {c.id: build_source(c) for c in configs}
    yield built
    for source in built.values():
        await source.aclose()


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_store_and_retrieve_500_instances_stream(
    sources: dict[str, PacsSource], adapter: str
) -> None:
    source, key = sources[adapter], STUDY_KEY[adapter]
    files = LazyStudy(key)
    total_mb = BIG_INSTANCES * len(files[0]) / 2**20
    assert total_mb > 2.5 * LIMIT_MB  # holding the study would fail the assertion

    started = time.perf_counter()
    with PeakRss() as store_peak:
        result = await source.store(files)
    stored_s = time.perf_counter() - started
    assert len(result.stored) == BIG_INSTANCES and not result.failed
    assert store_peak.growth_mb < LIMIT_MB, f"store grew RSS by {store_peak.growth_mb:.0f} MB"

    count = size = 0
    started = time.perf_counter()
    with PeakRss() as retrieve_peak:
        async for data in source.retrieve_study(uid(key)):
            count += 1
            size += len(data)
            del data
    retrieved_s = time.perf_counter() - started
    assert count == BIG_INSTANCES and size / 2**20 > total_mb * 0.99
    assert retrieve_peak.growth_mb < LIMIT_MB, (
        f"retrieve grew RSS by {retrieve_peak.growth_mb:.0f} MB"
    )
    print(
        f"{adapter}: {total_mb:.0f} MB stored in {stored_s:.1f}s (peak RSS growth "
        f"{store_peak.growth_mb:.1f} MB), retrieved in {retrieved_s:.1f}s "
        f"({retrieve_peak.growth_mb:.1f} MB)"
    )


@pytest.mark.parametrize("adapter", ["orthanc", "dcm4chee"])
async def test_store_stream_500_instances(sources: dict[str, PacsSource], adapter: str) -> None:
    """The HTTP adapters also store from an async iterable (e.g. another archive's retrieve)."""
    files = LazyStudy("504")

    async def produce() -> AsyncIterator[bytes]:
        for i in range(len(files)):
            yield files[i]

    with PeakRss() as peak:
        result = await sources[adapter].store_stream(produce())  # type: ignore[attr-defined]
    assert len(result.stored) == BIG_INSTANCES and not result.failed
    assert peak.growth_mb < LIMIT_MB, f"{adapter} grew RSS by {peak.growth_mb:.0f} MB"
