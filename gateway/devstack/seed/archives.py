"""Seed every archive with role `store` from the settings: the `seed` command and the demo."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.core.settings import Settings
from gateway.devstack.seed.loader import load_demo
from gateway.devstack.seed.plan import build_demo
from gateway.devstack.seed.truth import write_truth
from gateway.sources.registry import build_source


async def seed_archives(
    settings: Settings, seed_value: int, patients: int, truth: Path | None
) -> dict[str, int]:
    """Build the demo plan and store it through the source adapters; instances per source."""
    ids = settings.ids_with_role("store")
    plan = build_demo(seed=seed_value, patients=patients, sources=ids)
    if truth is not None:
        await asyncio.to_thread(write_truth, plan.truth, truth)
    sources = {i: build_source(settings.source(i)) for i in ids}
    try:
        return await load_demo(plan, sources, progress=_progress)
    finally:
        for s in sources.values():
            await s.aclose()


def _progress(source: str, done: int, total: int) -> None:
    if done == total or done % 200 == 0:
        print(f"  {source}: {done}/{total}", file=sys.stderr, flush=True)
