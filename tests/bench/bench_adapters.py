"""Adapter latency against each archive's own fastest direct query, same run, same data.

    .venv/bin/python -m tests.bench.bench_adapters [--patients 1000] [--repeat 21]

Starts a LocalStack, loads N patients (one study, one series, one tiny
instance each) into every archive through the adapters' own `store`, then
times, alternating, an adapter query for all N and the direct query:

- Orthanc REST: `find_patients` vs `GET /patients?expand`, `find_studies` vs
  `GET /studies?expand`;
- DICOMweb (dcm4chee dialect, the Orthanc that plays DCM4CHEE): `find_studies`
  and `find_patients` vs QIDO `GET /studies?limit=N`;
- DIMSE (dcmqrscp, at most 500 patients: see DCMQRSCP_MAX_STUDIES):
  `find_patients` vs one pynetdicom Patient Root C-FIND (association included).

Every call is timed warm (after one untimed call), as a gateway serving
repeated queries runs; the Orthanc adapter then reuses the records it built
(`orthanc_records.Records`); a first, cold call costs ~3 ms (patients) to
~7 ms (studies) more per 1,000 rows.

A direct HTTP query is timed twice: body read only, and body read + JSON parsed
(what any client must do before using the answer); the ratio is against the
latter, the stricter ratio against the former is shown too. Not a pytest test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import import_module
from io import BytesIO
from typing import Any, Protocol

import httpx
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from gateway.core.errors import SourceError
from gateway.core.settings import SourceConfig
from gateway.devstack.stack import LocalStack, StackInfo
from gateway.sources.base import PatientQuery, StudyQuery
from gateway.sources.dicomweb.source import DicomWebSource
from gateway.sources.http.client import DEFAULT_HEADERS
from gateway.sources.orthanc.source import OrthancSource
from gateway.sources.resilience import CallStats

ROOT = "1.2.826.0.1.3680043.10.1011"
# dcmqrscp's compile-time DB_UpperMaxStudies: past 500 studies it deletes the oldest, and
# dcmtk 3.6.7's child process then dies ("double free or corruption"): never go past it.
DCMQRSCP_MAX_STUDIES = 500
Timed = Callable[[], Awaitable[Any]]


def tiny_instance(i: int) -> bytes:
    """Patient i's only instance: 8x8 CT, UTF-8."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID, ds.PatientName = f"BENCH{i:05d}", f"NAME{i:05d}^Given"
    ds.PatientBirthDate, ds.PatientSex = f"19{i % 100:02d}0101", "FM"[i % 2]
    ds.StudyInstanceUID = f"{ROOT}.{i + 1}"
    ds.SeriesInstanceUID = f"{ROOT}.{i + 1}.1"
    ds.SOPInstanceUID = f"{ROOT}.{i + 1}.1.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.StudyDate, ds.StudyTime, ds.StudyDescription = "20240101", "120000", "Bench"
    ds.AccessionNumber, ds.StudyID, ds.Modality = f"ACC{i}", "1", "CT"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.zeros(64, np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@dataclass
class Row:
    """One line of the result table."""

    source: str
    query: str
    direct: str
    adapter_ms: float
    read_ms: float
    parsed_ms: float
    results: int
    requests: float

    def line(self) -> str:
        ratio = self.adapter_ms / self.parsed_ms
        strict = self.adapter_ms / self.read_ms
        return (
            f"| {self.source} | {self.query} | {self.adapter_ms:.1f} | {self.direct} | "
            f"{self.read_ms:.1f} | {self.parsed_ms:.1f} | **{ratio:.2f}** | {strict:.2f} | "
            f"{self.results} | {self.requests:g} |"
        )


async def _ms(fn: Timed) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1000


class Measured(Protocol):
    """An adapter whose calls are counted (every adapter: `stats` from its guard)."""

    @property
    def id(self) -> str: ...

    @property
    def stats(self) -> CallStats: ...


async def compare(
    source: Measured,
    query: str,
    call: Timed,
    direct: str,
    read: Timed,
    parsed: Timed,
    repeat: int,
) -> Row:
    """Median of `repeat` alternating runs of the adapter call and both direct variants."""
    for fn in (call, read, parsed):  # warm-up: connections, capability probes
        await fn()
    before = source.stats.calls
    samples: dict[str, list[float]] = {"adapter": [], "read": [], "parsed": []}
    for _ in range(repeat):
        samples["adapter"].append(await _ms(call))
        samples["read"].append(await _ms(read))
        samples["parsed"].append(await _ms(parsed))
    requests = (source.stats.calls - before) / repeat
    results = len(await call())
    med = {k: statistics.median(v) for k, v in samples.items()}
    return Row(
        source.id, query, direct, med["adapter"], med["read"], med["parsed"], results, requests
    )


def http_direct(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> tuple[Timed, Timed]:
    async def read() -> bytes:
        response = await client.get(url, headers=headers)
        response.raise_for_status()
        return response.content

    async def parsed() -> Any:
        return json.loads(await read())

    return read, parsed


async def bench_http(info: StackInfo, patients: int, repeat: int) -> list[Row]:
    files = [tiny_instance(i) for i in range(patients)]
    orthanc = OrthancSource(
        SourceConfig(id="orthanc", kind="orthanc", url=info.orthanc_url, timeout_s=60)
    )
    dicomweb = DicomWebSource(
        SourceConfig(
            id="dcm4chee", kind="dicomweb", dialect="dcm4chee", url=info.dcm4chee_url, timeout_s=60
        )
    )
    for source in (orthanc, dicomweb):
        start = time.perf_counter()
        result = await source.store(files)
        assert len(result.stored) == patients, result.failed[:5]
        print(f"loaded {patients} instances into {source.id} in {time.perf_counter() - start:.1f}s")
    rows = []
    async with httpx.AsyncClient(timeout=60, headers=DEFAULT_HEADERS) as client:
        qido = {"Accept": "application/dicom+json"}
        everyone = PatientQuery(limit=patients)
        all_studies = StudyQuery(limit=patients)
        read, parsed = http_direct(client, f"{info.orthanc_url}/patients?expand", {})
        rows.append(
            await compare(
                orthanc,
                "find_patients",
                lambda: orthanc.find_patients(everyone),
                "`GET /patients?expand`",
                read,
                parsed,
                repeat,
            )
        )
        read, parsed = http_direct(client, f"{info.orthanc_url}/studies?expand", {})
        rows.append(
            await compare(
                orthanc,
                "find_studies",
                lambda: orthanc.find_studies(all_studies),
                "`GET /studies?expand`",
                read,
                parsed,
                repeat,
            )
        )
        studies_read, studies_parsed = read, parsed
        series_read, series_parsed = http_direct(client, f"{info.orthanc_url}/series?expand", {})

        async def both_read() -> tuple[Any, Any]:
            return await studies_read(), await series_read()

        async def both_parsed() -> tuple[Any, Any]:
            return await studies_parsed(), await series_parsed()

        rows.append(  # the same fields need both listings: counts and modalities are per series
            await compare(
                orthanc,
                "find_studies",
                lambda: orthanc.find_studies(all_studies),
                "`GET /studies?expand` + `GET /series?expand`",
                both_read,
                both_parsed,
                repeat,
            )
        )
        url = f"{info.dcm4chee_url}/studies?limit={patients}"
        read, parsed = http_direct(client, url, qido)
        for name, call in (
            ("find_studies", lambda: dicomweb.find_studies(all_studies)),
            ("find_patients", lambda: dicomweb.find_patients(everyone)),
        ):
            rows.append(
                await compare(
                    dicomweb, name, call, f"QIDO `/studies?limit={patients}`", read, parsed, repeat
                )
            )
    await orthanc.aclose()
    await dicomweb.aclose()
    return rows


async def bench_dimse(stack: LocalStack, patients: int, repeat: int) -> list[Row]:
    """DIMSE adapter vs a raw pynetdicom C-FIND (skipped until the adapter exists)."""
    try:
        dimse_source = import_module("gateway.sources.dimse.source").DimseSource
    except (ImportError, AttributeError):
        print("DIMSE: gateway.sources.dimse.source.DimseSource not available; hook: bench_dimse()")
        return []
    from pynetdicom import AE  # imported here: only the DIMSE bench needs it

    info = stack.info
    assert info is not None
    config = SourceConfig(
        id="legacy",
        kind="dimse",
        host="127.0.0.1",
        port=info.legacy_port,
        called_aet="DCMQRSCP",
        timeout_s=60,
    )
    source = dimse_source(config)
    if patients > DCMQRSCP_MAX_STUDIES:
        print(f"DIMSE: dcmqrscp keeps at most {DCMQRSCP_MAX_STUDIES} studies; using that many")
        patients = DCMQRSCP_MAX_STUDIES
    start = time.perf_counter()
    try:
        result = await source.store([tiny_instance(i) for i in range(patients)])
    except SourceError as exc:
        print(
            f"DIMSE: loading dcmqrscp failed ({exc}); log tail:\n{stack.services['legacy'].tail()}"
        )
        return []
    assert len(result.stored) == patients, result.failed[:5]
    print(f"loaded {patients} instances into legacy in {time.perf_counter() - start:.1f}s")

    patient_root = "1.2.840.10008.5.1.4.1.2.1.1"

    def c_find() -> list[Dataset]:
        ae = AE(ae_title="BENCH")
        ae.add_requested_context(patient_root)
        assoc = ae.associate("127.0.0.1", info.legacy_port, ae_title="DCMQRSCP")
        ident = Dataset()
        ident.QueryRetrieveLevel = "PATIENT"
        for key in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"):
            setattr(ident, key, "")
        found = [i for s, i in assoc.send_c_find(ident, patient_root) if i is not None and s]
        assoc.release()
        return found

    async def direct() -> list[Dataset]:
        return await asyncio.to_thread(c_find)

    everyone = PatientQuery(limit=patients)
    row = await compare(
        source,
        "find_patients",
        lambda: source.find_patients(everyone),
        "pynetdicom C-FIND (Patient Root)",
        direct,
        direct,
        repeat,
    )
    await source.aclose()
    return [row]


async def main(patients: int, repeat: int) -> None:
    stack = LocalStack()
    info = stack.start()
    try:
        rows = await bench_http(info, patients, repeat)
        rows += await bench_dimse(stack, patients, repeat)
    finally:
        stack.stop()
    print()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{patients} patients, median of {repeat} alternating runs (ms); load average {load}")
    print()
    print(
        "| source | adapter call | adapter | direct query | direct read | direct read+parse "
        "| ratio | ratio vs read | results | requests/call |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(row.line())


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    asyncio.run(main(args.patients, args.repeat))


if __name__ == "__main__":
    cli()
