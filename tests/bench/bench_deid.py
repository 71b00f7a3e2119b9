"""De-identification engine throughput on one core against references measured in the same run.

    .venv/bin/python -m tests.bench.bench_deid [--files 1000] [--repeat 3]

Takes the first N CT and MR instances of the deterministic demo data (seed 42;
as many patients as needed), in memory, and times on this process (one core):

- engine: `deidentify_bytes` with the complete Basic Profile (no option), and
  with the options a research export usually takes;
- engine + validation: `process_instance` (output re-read; dciodvfy is disabled
  here as it is a subprocess per file);
- reference: plain pydicom read + write of the same files (the floor any
  pydicom-based tool pays);
- dicognito, when it is importable (not a project dependency), on the same files.

Fairness: every contender gets the same bytes and pays the same pydicom read
from bytes and write back; dicognito runs its default `Anonymizer` (one instance,
as its CLI does). Passes are interleaved (one pass of each contender per round,
`--repeat` rounds) so that other load on the machine falls on all of them alike;
the best pass of each counts. files/s, the ratios and the load average are
printed. Not a pytest test.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from io import BytesIO
from itertools import islice
from unittest import mock

from pydicom import dcmread

from gateway.devstack.seed import build_demo
from workers.dicom.deid import DeidConfig, deidentify_bytes
from workers.dicom.deid import validate as validate_mod

KEY = "bench-key-0123456789abcdef0123456789"
RESEARCH = frozenset(
    {"RetainLongitudinalTemporalInformationModifiedDates", "CleanDescriptors", "RetainSafePrivate"}
)


def corpus(n: int) -> list[bytes]:
    """The first `n` CT/MR demo instances (Part 10 bytes)."""
    patients = 20
    while True:
        plan = build_demo(seed=42, patients=patients)
        files = [
            data
            for source in plan.sources
            for data in plan.iter_files(source)
            if dcmread(BytesIO(data), stop_before_pixels=True).Modality in ("CT", "MR")
        ]
        if len(files) >= n:
            return list(islice(files, n))
        patients *= 2


def rates(
    files: list[bytes], contenders: dict[str, Callable[[bytes], object]], repeat: int
) -> dict[str, float]:
    """Best files/s of each contender over `repeat` interleaved rounds."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeat):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for data in files:
                fn(data)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(files) / seconds for name, seconds in best.items()}


def pydicom_round_trip(data: bytes) -> bytes:
    out = BytesIO()
    dcmread(BytesIO(data)).save_as(out)
    return out.getvalue()


def dicognito_fn() -> Callable[[bytes], object] | None:
    try:
        from dicognito.anonymizer import Anonymizer
    except ImportError:
        return None
    anonymizer = Anonymizer()

    def run(data: bytes) -> bytes:
        ds = dcmread(BytesIO(data))
        anonymizer.anonymize(ds)
        out = BytesIO()
        ds.save_as(out)
        return out.getvalue()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = corpus(args.files)
    size = sum(map(len, files)) / len(files) / 1024
    print(f"{len(files)} files, mean {size:.1f} KiB")
    basic, research = DeidConfig(KEY, "bench"), DeidConfig(KEY, "bench", RESEARCH)
    contenders: dict[str, Callable[[bytes], object]] = {
        "pydicom read+write": pydicom_round_trip,
        "engine, Basic Profile": lambda d: deidentify_bytes(d, basic),
        "engine, research options": lambda d: deidentify_bytes(d, research),
        "engine + re-read check": lambda d: validate_mod.process_instance(d, basic),
    }
    dicognito = dicognito_fn()
    if dicognito is not None:
        contenders["dicognito"] = dicognito
    with mock.patch.object(validate_mod.shutil, "which", return_value=None):
        results = rates(files, contenders, args.repeat)
    reference = results["pydicom read+write"]
    for name, value in results.items():
        extra = f"  x{value / results['dicognito']:.2f} dicognito" if dicognito else ""
        print(f"{name:28s} {value:8.1f} files/s  {value / reference:5.2f} of pydicom{extra}")
    print("load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
