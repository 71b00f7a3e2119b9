"""`pacs-gateway index build|status`: the key index from the shell."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from gateway.core.enums import SourceRole
from gateway.core.errors import SourceError
from gateway.core.settings import load_settings
from gateway.index import store
from gateway.index.refresh import build
from gateway.runtime import Runtime


def cmd_index_build(args: argparse.Namespace) -> int:
    """Build the index of one archive (or of every query archive), in this process."""

    async def work() -> int:
        runtime = await Runtime.create(load_settings(args.config))
        failed = 0
        try:
            ids = [args.source] if args.source else runtime.settings.ids_with_role(SourceRole.QUERY)
            for source_id in ids:
                if source_id not in runtime.sources:
                    print(f"error: unknown source {source_id!r}", file=sys.stderr)
                    return 2

                async def progress(fraction: float, phase: str, sid: str = source_id) -> None:
                    print(f"  {sid}: {phase} {fraction:.0%}", file=sys.stderr, flush=True)

                try:
                    done = await build(runtime.sessions, runtime.sources[source_id], progress)
                except SourceError as exc:
                    print(f"{source_id}: failed ({exc.code})", file=sys.stderr)
                    failed += 1
                    continue
                print(f"{source_id}: {done.upserted} studies indexed, {done.removed} removed")
        finally:
            await runtime.aclose()
        return 1 if failed else 0

    return asyncio.run(work())


def cmd_index_status(args: argparse.Namespace) -> int:
    """Each archive's index: studies, complete, last refresh."""

    async def work() -> dict[str, Any]:
        runtime = await Runtime.create(load_settings(args.config))
        try:
            return await store.states(runtime.sessions)
        finally:
            await runtime.aclose()

    for source, st in sorted(asyncio.run(work()).items()):
        state = "complete" if st.complete else "building"
        print(f"{source}\t{st.studies} studies\t{state}\trefreshed {st.refreshed_at}")
    return 0


def add_parsers(
    sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    """The `index` subcommands."""
    index = sub.add_parser("index", help="the key index for pages at scale")
    actions = index.add_subparsers(dest="action", required=True)
    p = with_config(actions.add_parser("build", help="list an archive and index it"))
    p.add_argument("--source", help="one source id (default: every source with role query)")
    p.set_defaults(func=cmd_index_build)
    with_config(actions.add_parser("status", help="each archive's index")).set_defaults(
        func=cmd_index_status
    )
