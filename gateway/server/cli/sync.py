"""`pacs-gateway sync`: a sync job run in this process, with a progress bar and a summary."""

from __future__ import annotations

import sys
from typing import Any

from gateway.core.errors import InvalidInput
from gateway.core.settings import Settings
from gateway.jobs.specs import SyncSpec
from gateway.server.cli.here import run_shown


async def run_sync(settings: Settings, body: dict[str, Any], quiet: bool = False) -> int:
    """0 when the job succeeded, 1 when it failed, 2 for a refused input."""
    from workers.jobs import sync

    try:
        spec = SyncSpec.parse(body, settings)
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return await run_shown(settings, spec, sync.run, quiet)
