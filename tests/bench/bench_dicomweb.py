"""Federated DICOMweb and the viewer (issue 14): `/dicomweb` and OHIF against the archives.

    .venv/bin/python -m tests.bench.bench_dicomweb [--patients 500] [--repeat 11]
        [--wado-repeat 5] [--viewer-repeat 5] [--only qido,wado,viewer] [--index]
        [--workdir /dev/shm/pacs-bench-dicomweb]

Starts a LocalStack (under /dev/shm), seeds its two DICOMweb-capable archives — Orthanc
"orthanc" and the Orthanc playing DCM4CHEE — with the demo seeder (seed 42, `--patients`;
the DIMSE archive is left out: it has no QIDO-RS to compare with and keeps at most 500
studies), stores one 500-instance CT study of 512 x 512 slices (512 KiB each, 256 MiB)
into "orthanc", and starts a real `pacs-gateway serve` process (`[auth] mode = "open"`,
source timeouts 30 s, no periodic sync). Then, same run, alternating, one warm-up each and
the median of N (spread: min-max):

- QIDO `/studies?limit=500` over HTTP (httpx; body read and JSON-parsed) through the
  gateway's `/dicomweb` and from each archive's own QIDO-RS (Orthanc's `/dicom-web`, the
  DCM4CHEE stand-in's DICOMweb root); the reference is the slowest archive's median.
  With `--index`, both archives' key index is built after seeding, the gateway answers
  the page from it (newest first, verified live), and a second gateway process whose
  index is never fresh enough (`index_freshness_s` 0.001) lists live ("gateway:live").
- WADO-RS of the 500-instance study (multipart/related; application/dicom; body streamed
  and counted) through the gateway and from Orthanc's `/dicom-web/studies/{uid}`:
  throughput ratio, and the gateway process's RSS (psutil, every 5 ms, process and
  children) at its highest during the retrieval minus just before it.
- OHIF time to first image for the demo's RT planning CT in Debian's chromium (Playwright,
  a fresh browser context per run): the gateway's `/viewer/` on its `/dicomweb`, against
  the same OHIF `dist/` and configuration served by a reference process (uvicorn) whose
  data source is Orthanc's own DICOMweb through a thin same-origin pass-through proxy
  (Orthanc sends no CORS headers). Timed from navigation to the first viewport canvas
  with an image (sampled in the page every 50 ms), and OHIF's own `studyToFirstImage`.

Not a pytest test; asserts no time. Progress on stderr, the report on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from gateway.core.settings import Settings, load_settings
from gateway.devstack.seed import GroundTruth, build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.devstack.stack import LocalStack, StackInfo
from gateway.index.refresh import build
from gateway.runtime import Runtime
from gateway.server import viewer
from tests.jobs_support import GatewayProcess, big_study, drop_database, free_port, store_files

DATABASE = "pacs_gw_bench_dicomweb"
ARCHIVES = ("orthanc", "dcm4chee")  # mirror, main: the seeder's placement by position
TIMEOUT_S = 30
QIDO_LIMIT = 500
BIG_INSTANCES = 500
BIG_ROWS = 512  # 512 x 512 x 2 bytes: 512 KiB per instance, 256 MiB per study
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
# Every request asks for no content coding: Orthanc gzips its answers (JSON and Part 10
# files alike) for a client that accepts it, which on loopback only costs time.
IDENTITY = {"Accept-Encoding": "identity"}
CHROMIUM = "/usr/bin/chromium"


def log(*parts: object) -> None:
    """Progress on stderr (stdout is the report)."""
    print(*parts, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Series:
    """Samples of one timed thing, with its median and spread."""

    samples: list[float] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def spread(self, fmt: str = "{:.0f}") -> str:
        return f"{fmt.format(min(self.samples))}–{fmt.format(max(self.samples))}"


# -- stack ----------------------------------------------------------------------------------


def gateway_toml(info: StackInfo) -> str:
    """The stack's gateway.toml: open mode, the two DICOMweb archives, 30 s timeouts."""
    text = info.gateway_toml(
        results_dir=str(info.workdir / "results"), sync_interval_s=0, auth_mode="open"
    )
    head, *blocks = text.split("[[sources]]")
    head = re.sub(r"\[\[sync\]\]\nfrom = \"dcm4chee\"\nto = \"orthanc\"\n", "", head)
    kept = [b for b in blocks if re.search(r'^id = "(orthanc|dcm4chee)"$', b, re.M)]
    text = head + "".join("[[sources]]" + b for b in kept)
    tail = blocks[-1].split("\n[auth]", 1)
    text += "\n[auth]" + tail[1] if len(tail) == 2 else ""
    return text.replace("timeout_s = 5", f"timeout_s = {TIMEOUT_S}")


async def seed(
    settings: Settings, patients: int, wado: bool
) -> tuple[GroundTruth, dict[str, str], float]:
    """The demo data over the two archives and, for WADO, one big study held by each
    archive alone (a different study each); (truth, big study UID per archive, seconds)."""
    start = time.perf_counter()
    counts = await seed_archives(settings, 42, patients, None)
    truth = build_demo(seed=42, patients=patients, sources=ARCHIVES).truth
    assert counts == truth.instance_counts, (counts, truth.instance_counts)
    log(f"seeded {patients} patients {counts} in {time.perf_counter() - start:.0f}s")
    big: dict[str, str] = {}
    for seed_value, sid in enumerate(ARCHIVES if wado else (), start=14):
        uid, files = await asyncio.to_thread(big_study, BIG_INSTANCES, seed_value, BIG_ROWS)
        await store_files(settings, sid, files)
        log(f"big study ({len(files)} x {len(files[0]) // 1024} KiB) stored into {sid}")
        big[sid] = uid
        del files
    return truth, big, time.perf_counter() - start


async def build_indexes(settings: Settings) -> None:
    """Both archives' key index, built as the INDEX job builds it."""
    runtime = await Runtime.create(settings)  # migrates: no gateway has started yet
    try:
        for sid in ARCHIVES:
            start = time.perf_counter()
            done = await build(runtime.sessions, runtime.sources[sid])
            log(f"index of {sid}: {done.upserted} studies in {time.perf_counter() - start:.1f}s")
    finally:
        await runtime.aclose()


def live_toml(text: str) -> str:
    """The same configuration with an index never fresh enough to be used."""
    return text.replace("[gateway]\n", "[gateway]\nindex_freshness_s = 0.001\n", 1)


# -- QIDO -----------------------------------------------------------------------------------


def qido(http: httpx.Client, url: str, limit: int | None) -> tuple[float, int]:
    """One `/studies[?limit=]`: wall time (ms) to the parsed answer, and its length."""
    start = time.perf_counter()
    params = {"limit": limit} if limit else {}
    r = http.get(url, params=params, headers={"Accept": "application/dicom+json", **IDENTITY})
    found = r.json()
    ms = (time.perf_counter() - start) * 1000
    assert r.status_code == 200, r.text[:300]
    assert "warning" not in r.headers, r.headers.get("warning")
    return ms, len(found)


def bench_qido(roots: dict[str, str], repeat: int) -> tuple[dict[str, Series], dict[str, int]]:
    """`repeat` alternating rounds after one warm-up round. Keys ending in `:all` ask the
    archive for every study it holds (no limit): what the gateway has to read to merge."""
    out = {k: Series() for k in roots}
    counts: dict[str, int] = {}
    with httpx.Client(timeout=120) as http:
        for key, root in roots.items():  # warm-up: connections, the archives' caches
            limit = None if key.endswith(":all") else QIDO_LIMIT
            ms, n = qido(http, f"{root}/studies", limit)
            log(f"qido {key}: warm-up {ms:.0f} ms, {n} studies")
            assert limit is None or n == QIDO_LIMIT, (key, n)
            counts[key] = n
        for _ in range(repeat):
            for key, root in roots.items():
                limit = None if key.endswith(":all") else QIDO_LIMIT
                out[key].samples.append(qido(http, f"{root}/studies", limit)[0])
    for key, s in out.items():
        log(f"qido {key}: median {s.median:.0f} ms ({s.spread()})")
    return out, counts


# -- WADO -----------------------------------------------------------------------------------


class TreeRss:
    """The highest RSS of a process and its children while a block runs: the kernel's
    high-water mark (VmHWM), reset before the block; nothing sampled meanwhile (a 5 ms
    sampler cost the client process CPU during the gateway's retrievals only)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.before = self.peak = 0
        self.cpu_s = 0.0  # user + system seconds of the tree during the block

    def tree(self) -> list[psutil.Process]:
        return [self.proc, *self.proc.children(recursive=True)]

    def rss(self) -> int:
        total = 0
        for p in self.tree():
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    @staticmethod
    def _status_kb(pid: int, key: str) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    @contextmanager
    def watch(self) -> Iterator[TreeRss]:
        procs = self.tree()
        self.before = self.rss()
        for p in procs:
            Path(f"/proc/{p.pid}/clear_refs").write_text("5")  # VmHWM := current RSS
        cpu = sum(sum(p.cpu_times()[:2]) for p in procs)
        try:
            yield self
        finally:
            self.peak = sum(self._status_kb(p.pid, "VmHWM") * 1024 for p in procs)
            self.cpu_s = sum(sum(p.cpu_times()[:2]) for p in procs) - cpu

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 1e6


def wado(http: httpx.Client, url: str) -> tuple[float, int, int]:
    """One study retrieval, streamed: seconds to the last byte, bytes, parts."""
    start = time.perf_counter()
    size = parts = 0
    with http.stream("GET", url, headers={"Accept": ACCEPT, **IDENTITY}) as r:
        assert r.status_code == 200, r.read()[:300]
        boundary = re.search(r"boundary=\"?([^\";]+)", r.headers["content-type"])
        assert boundary, r.headers["content-type"]
        mark = b"\r\n--" + boundary[1].encode()
        tail = b""
        for chunk in r.iter_raw(1 << 20):
            size += len(chunk)
            window = tail + chunk
            parts += window.count(mark)
            tail = window[-(len(mark) - 1) :]
    return time.perf_counter() - start, size, parts


@dataclasses.dataclass
class WadoResult:
    holder: str
    seconds: dict[str, Series]
    mbps: dict[str, Series]
    growth_mb: Series
    size: int
    parts: int


def bench_wado(holder: str, gateway: str, direct: str, pid: int, repeat: int) -> WadoResult:
    """Gateway and direct alternating, one warm-up each, then `repeat` rounds."""
    roots = {"gateway": gateway, holder: direct}
    seconds = {k: Series() for k in roots}
    mbps = {k: Series() for k in roots}
    growth, cpu = Series(), Series()
    rss = TreeRss(pid)
    sizes: dict[str, int] = {}
    parts = 0
    with httpx.Client(timeout=300) as http:
        for key, url in roots.items():
            s, n, p = wado(http, url)
            sizes[key] = n
            parts = p if key == "gateway" else parts
            log(f"wado {holder} {key}: warm-up {s:.1f}s, {n / 1e6:.1f} MB, {p} delimiters")
        for _ in range(repeat):
            for key, url in roots.items():
                if key == "gateway":
                    with rss.watch():
                        s, n, p = wado(http, url)
                    growth.samples.append(rss.growth_mb)
                    cpu.samples.append(rss.cpu_s)
                else:
                    s, n, p = wado(http, url)
                seconds[key].samples.append(s)
                mbps[key].samples.append(n / s / 1e6)
    for key in roots:
        log(f"wado {holder} {key}: median {seconds[key].median:.2f}s, {mbps[key].median:.1f} MB/s")
    log(
        f"wado {holder}: gateway RSS growth median {growth.median:.1f} MB, "
        f"max {max(growth.samples):.1f}; its CPU per retrieval {cpu.median:.2f} s "
        f"({cpu.spread('{:.2f}')})"
    )
    return WadoResult(holder, seconds, mbps, growth, sizes["gateway"], parts)


# -- viewer ---------------------------------------------------------------------------------

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}


def reference_app(target: str) -> Any:
    """OHIF's `dist/` as the gateway serves it (same router, same headers) with a data
    source of this origin's `/dicom-web`, passed through to `target` (Orthanc's
    `/dicom-web`): the thinnest same-origin front an archive without CORS needs."""
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Mount, Route

    http = httpx.AsyncClient(timeout=300)
    config = viewer.ohif_config()
    script = (
        f"window.config = {json.dumps(config)};\n"
        "for (const k of ['qidoRoot', 'wadoRoot', 'wadoUriRoot'])\n"
        "  window.config.dataSources[0].configuration[k] = window.location.origin + '/dicom-web';\n"
    )

    async def app_config(request: Request) -> Response:
        headers = {**viewer.ISOLATED, "cache-control": "no-cache"}
        return Response(script, media_type="application/javascript", headers=headers)

    async def proxy(request: Request) -> Response:
        url = target + "/" + request.path_params["path"]
        if request.url.query:
            url += "?" + request.url.query
        headers = [(k, v) for k, v in request.headers.raw if k.decode().lower() not in HOP]
        body = await request.body() if request.method not in ("GET", "HEAD") else None
        upstream = await http.send(
            http.build_request(request.method, url, headers=headers, content=body), stream=True
        )
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP}
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers=out,
            background=BackgroundTask(upstream.aclose),
        )

    files = viewer.router(lambda request: None, viewer.DIST)
    return Starlette(
        routes=[
            Route("/viewer/app-config.js", app_config, methods=["GET", "HEAD"]),
            Mount("/viewer", app=files),
            Route("/dicom-web/{path:path}", proxy, methods=["GET", "HEAD", "POST"]),
        ]
    )


def serve_reference(port: int, target: str) -> None:
    """Run `reference_app` (the `--reference` child process)."""
    import uvicorn

    uvicorn.run(reference_app(target), host="127.0.0.1", port=port, log_level="warning")


@contextmanager
def reference_process(target: str, logfile: Path) -> Iterator[str]:
    """The reference viewer in a child process; its origin."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.bench.bench_dicomweb", "--reference", str(port), target]
    with logfile.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        origin = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, logfile.read_text()[-2000:]
            try:
                httpx.get(origin + "/viewer/app-config.js", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the reference viewer did not start"
                time.sleep(0.2)
        yield origin
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# Samples the page's canvases every 50 ms (copied into a small 2D canvas: no context is
# created on the viewer's own canvases); the first one showing an image (over 20 grey levels
# and a standard deviation over 8, as tests/e2e/test_viewer.py asks) sets the time.
FIRST_IMAGE_JS = """
(() => {
  window.__firstImage = null;
  const probe = document.createElement('canvas');
  probe.width = probe.height = 64;
  const check = () => {
    if (window.__firstImage !== null) return;
    const ctx = probe.getContext('2d', { willReadFrequently: true });
    for (const c of document.querySelectorAll('canvas')) {
      if (c === probe || c.width < 128 || c.height < 128) continue;
      ctx.clearRect(0, 0, 64, 64);
      try { ctx.drawImage(c, 0, 0, 64, 64); } catch (e) { continue; }
      const d = ctx.getImageData(0, 0, 64, 64).data;
      const levels = new Set();
      let sum = 0, sq = 0;
      for (let i = 0; i < d.length; i += 4) {
        const g = Math.round(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]);
        levels.add(g); sum += g; sq += g * g;
      }
      const n = d.length / 4, mean = sum / n, sd = Math.sqrt(Math.max(0, sq / n - mean * mean));
      if (levels.size > 20 && sd > 8) { window.__firstImage = performance.now(); return; }
    }
  };
  setInterval(check, 50);
})();
"""


def _not_blank(png: bytes) -> bool:
    """Whether a screenshot shows an image (as tests/e2e/test_viewer.py decides)."""
    from PIL import Image, ImageStat

    grey = Image.open(io.BytesIO(png)).convert("L")
    return len(grey.getcolors(256) or []) > 20 and ImageStat.Stat(grey).stddev[0] > 8


@dataclasses.dataclass
class ViewerResult:
    first_image_ms: dict[str, Series]
    ohif_ms: dict[str, Series]
    requests: dict[str, int]
    kinds: dict[str, dict[str, list[float]]]


def kind_of(url: str) -> str:
    """A DICOMweb request's kind, for the per-kind timings."""
    path = url.split("?", 1)[0]
    if "/dicomweb/" not in path and "/dicom-web/" not in path:
        return "static"
    for kind in ("metadata", "frames"):
        if f"/{kind}" in path:
            return kind
    return "qido" if path.endswith(("/studies", "/series", "/instances")) else "other"


async def open_study(
    browser: Any, url: str, kinds: dict[str, list[float]] | None = None
) -> tuple[float, float | None, int, bytes]:
    """One fresh context: navigation to the first image (ms), OHIF's studyToFirstImage,
    the requests made, a screenshot of the viewport. `kinds` collects each finished
    DICOMweb request's duration (ms) by kind."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        await ctx.add_init_script(FIRST_IMAGE_JS)
        page = await ctx.new_page()
        ohif: list[float] = []
        requests: list[str] = []

        def console(msg: Any) -> None:
            if "studyToFirstImage" in msg.text:
                found = re.search(r"studyToFirstImage:\s*([\d.]+)\s*(ms|s)", msg.text)
                if found:
                    value = float(found[1])
                    ohif.append(value * 1000 if found[2] == "s" else value)

        page.on("console", console)
        page.on("request", lambda r: requests.append(r.url))

        def finished(request: Any) -> None:
            if kinds is not None and request.timing["responseEnd"] > 0:
                kinds.setdefault(kind_of(request.url), []).append(request.timing["responseEnd"])

        page.on("requestfinished", finished)
        await page.goto(url)
        await page.wait_for_function("window.__firstImage !== null", timeout=120_000, polling=100)
        first: float = await page.evaluate("window.__firstImage")
        for _ in range(20):  # OHIF logs its own figure once the image is shown
            if ohif:
                break
            await asyncio.sleep(0.1)
        shot = await page.locator("canvas").first.screenshot()
        return first, (ohif[0] if ohif else None), len(requests), shot
    finally:
        await ctx.close()


async def bench_viewer(origins: dict[str, str], study: str, repeat: int) -> ViewerResult:
    """Each viewer alternating, one warm-up each, then `repeat` rounds."""
    from playwright.async_api import async_playwright

    first = {k: Series() for k in origins}
    ohif = {k: Series() for k in origins}
    requests: dict[str, int] = {}
    kinds: dict[str, dict[str, list[float]]] = {k: {} for k in origins}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            for key, origin in origins.items():
                ms, own, n, shot = await open_study(
                    browser, f"{origin}/viewer/viewer?StudyInstanceUIDs={study}"
                )
                assert _not_blank(shot), f"{key}: the viewport is blank"
                requests[key] = n
                log(f"viewer {key}: warm-up {ms:.0f} ms (OHIF {own}), {n} requests")
            for _ in range(repeat):
                for key, origin in origins.items():
                    ms, own, n, _ = await open_study(
                        browser, f"{origin}/viewer/viewer?StudyInstanceUIDs={study}", kinds[key]
                    )
                    first[key].samples.append(ms)
                    if own is not None:
                        ohif[key].samples.append(own)
        finally:
            await browser.close()
    for key in origins:
        log(f"viewer {key}: median {first[key].median:.0f} ms ({first[key].spread()})")
    return ViewerResult(first, ohif, requests, kinds)


# -- report ---------------------------------------------------------------------------------


def ratio_row(label: str, gw: Series, ref: Series, ref_name: str, fmt: str, goal: str) -> str:
    return (
        f"| {label} | {fmt.format(gw.median)} ({gw.spread(fmt)}) | {ref_name} "
        f"{fmt.format(ref.median)} ({ref.spread(fmt)}) | **{gw.median / ref.median:.2f}** | "
        f"{goal} |"
    )


def report(
    args: argparse.Namespace,
    truth: GroundTruth,
    seeding_s: float,
    qido_result: tuple[dict[str, Series], dict[str, int]] | None,
    wados: list[WadoResult],
    v: ViewerResult | None,
    loads: list[tuple[float, float, float]],
) -> None:
    held = {
        s: (sum(1 for st in truth.studies if s in st.sources), truth.instance_counts[s])
        for s in ARCHIVES
    }
    load = ", ".join(f"{a:.1f}/{b:.1f}/{c:.1f}" for a, b, c in loads)
    print(f"\nDate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load averages (1/5/15 min) {load}")
    big = (
        f"; plus one {BIG_INSTANCES}-instance study ({BIG_ROWS}x{BIG_ROWS}) in each"
        if wados
        else ""
    )
    print(
        f"Seeded {args.patients} patients in {seeding_s:.0f}s: "
        + ", ".join(f"{s} {n} studies / {i} instances" for s, (n, i) in held.items())
        + f"{big}.\n"
    )
    print("| figure | gateway: median (min–max) | reference: median (min–max) | ratio | goal |")
    print("|---|---:|---:|---:|---|")
    if qido_result is not None:
        q, _ = qido_result
        direct = [k for k in q if not k.startswith("gateway") and not k.endswith(":all")]
        ref = max(direct, key=lambda k: q[k].median)
        label = f"QIDO `/studies?limit=500`, ms (n={args.repeat})"
        slowest = f"slowest ({ref})"
        if "gateway:live" in q:
            live_label = label + ", listing live"
            print(ratio_row(live_label, q["gateway:live"], q[ref], slowest, "{:.0f}", ""))
            label += ", from the key index"
        print(ratio_row(label, q["gateway"], q[ref], slowest, "{:.0f}", "<= 1.2"))
    for w in wados:
        label = f"WADO-RS, study held by {w.holder} ({w.size / 1e6:.0f} MB), MB/s"
        label += f" (n={args.wado_repeat})"
        goal = ">= 0.9"
        print(ratio_row(label, w.mbps["gateway"], w.mbps[w.holder], w.holder, "{:.1f}", goal))
        g = w.growth_mb
        print(
            f"| gateway RSS growth during that retrieval, MB | max {max(g.samples):.1f} "
            f"(median {g.median:.1f}) | | | < 100 |"
        )
    if v is not None:
        ref_name = "OHIF on Orthanc (thin proxy)"
        label = f"OHIF navigation to first image, ms (n={args.viewer_repeat})"
        first = v.first_image_ms
        print(ratio_row(label, first["gateway"], first["direct"], ref_name, "{:.0f}", "<= 1.2"))
        if all(v.ohif_ms[k].samples for k in v.ohif_ms):
            own = v.ohif_ms
            label = "OHIF's own `studyToFirstImage`, ms"
            print(ratio_row(label, own["gateway"], own["direct"], ref_name, "{:.0f}", ""))
    print()
    if qido_result is not None:
        q, counts = qido_result
        print(
            "QIDO medians (ms; studies answered): "
            + ", ".join(f"{k} {s.median:.0f} ({s.spread()}; {counts[k]})" for k, s in q.items())
        )
    for w in wados:
        print(
            f"WADO of the study held by {w.holder}, seconds: "
            + ", ".join(f"{k} {s.median:.2f} ({s.spread('{:.2f}')})" for k, s in w.seconds.items())
            + f"; {w.parts} part delimiters in the gateway's answer"
        )
    if v is not None:
        print(f"Viewer requests per load (warm-up): {v.requests}")
        print("\nViewer requests by kind, over the timed loads (ms from request to last byte):\n")
        print("| viewer | kind | requests per load | median | max |")
        print("|---|---|---:|---:|---:|")
        for key, by_kind in v.kinds.items():
            for kind, ms in sorted(by_kind.items()):
                per = len(ms) / max(1, args.viewer_repeat)
                print(
                    f"| {key} | {kind} | {per:.0f} | {statistics.median(ms):.0f} | {max(ms):.0f} |"
                )


def run(args: argparse.Namespace) -> None:
    base = Path(args.workdir)
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    stack = LocalStack(workdir=workdir / "stack", database_name=DATABASE)
    only = set(args.only.split(","))
    loads: list[tuple[float, float, float]] = []
    try:
        info = stack.start()
        config = workdir / "gateway.toml"
        config.write_text(gateway_toml(info))
        env = {"DATABASE_URL": info.database_url, "REDIS_URL": info.redis_url}
        settings = load_settings(config, env=env)
        assert [s.id for s in settings.sources] == list(ARCHIVES), settings.sources
        truth, big, seeding_s = asyncio.run(seed(settings, args.patients, "wado" in only))
        live = None
        if args.index:
            asyncio.run(build_indexes(settings))
            live_config = workdir / "gateway-live.toml"
            live_config.write_text(live_toml(config.read_text()))
            assert live_config.read_text() != config.read_text(), "no [gateway] table"
            live = GatewayProcess(live_config, env, workdir / "gateway-live.log").start()
        gateway = GatewayProcess(config, env, workdir / "gateway.log").start()
        try:
            origin = f"http://127.0.0.1:{gateway.port}"
            httpx.get(origin + "/health", timeout=30)
            assert gateway.proc is not None
            q, wados, v = None, [], None
            direct = {"orthanc": info.orthanc_url + "/dicom-web", "dcm4chee": info.dcm4chee_url}
            if "qido" in only:
                loads.append(os.getloadavg())
                roots = {"gateway": origin + "/dicomweb", **direct}
                if live is not None:
                    roots["gateway:live"] = f"http://127.0.0.1:{live.port}/dicomweb"
                roots |= {f"{k}:all": root for k, root in direct.items()}
                q = bench_qido(roots, args.repeat)
            if "wado" in only:
                for sid, uid in big.items():
                    loads.append(os.getloadavg())
                    path = f"/studies/{uid}"
                    gw = f"{origin}/dicomweb{path}"
                    wados.append(
                        bench_wado(sid, gw, direct[sid] + path, gateway.proc.pid, args.wado_repeat)
                    )
            if "viewer" in only:
                assert Path(CHROMIUM).exists(), "chromium missing: Debian's chromium is needed"
                loads.append(os.getloadavg())
                rt = truth.rtstructs[0].study_uid
                with reference_process(direct["orthanc"], workdir / "reference.log") as ref:
                    origins = {"gateway": origin, "direct": ref}
                    v = asyncio.run(bench_viewer(origins, rt, args.viewer_repeat))
            loads.append(os.getloadavg())
        finally:
            gateway.stop()
            if live is not None:
                live.stop()
        report(args, truth, seeding_s, q, wados, v, loads)
    finally:
        url = stack.info.database_url if stack.info else None
        stack.stop()
        drop_database(url, prefix=DATABASE)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def cli(argv: list[str] | None = None, main: Callable[[argparse.Namespace], None] = run) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=11, help="QIDO rounds")
    parser.add_argument("--wado-repeat", type=int, default=3)
    parser.add_argument("--viewer-repeat", type=int, default=5)
    parser.add_argument("--only", default="qido,wado,viewer")
    parser.add_argument("--index", action="store_true", help="QIDO from the key index too")
    shm = Path("/dev/shm")
    default = shm if shm.is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
    parser.add_argument("--workdir", default=str(default / "pacs-bench-dicomweb"))
    parser.add_argument("--keep", action="store_true", help="leave the work directory")
    parser.add_argument("--reference", nargs=2, metavar=("PORT", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference:
        serve_reference(int(args.reference[0]), args.reference[1])
        return
    main(args)


if __name__ == "__main__":
    cli()
