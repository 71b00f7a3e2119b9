"""The `pacs-gateway` command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import logging
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from gateway.core.enums import AuthMode, ConflictStrategy, LogFormat
from gateway.core.errors import ConfigError
from gateway.core.logs import configure_logging, quiet_libraries
from gateway.core.settings import Settings, load_settings
from gateway.devstack import viewer
from gateway.devstack.seed.archives import seed_archives
from gateway.server.cli import identity, importing, index

log = logging.getLogger("pacs_gateway")


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    configure_logging(settings.logging.format, settings.logging.level)
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway with uvicorn."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from gateway.metrics.tracing import configure_tracing
    from gateway.server.app import create_app

    settings = _settings(args)
    configure_tracing(settings.telemetry, "gateway")
    if settings.auth.mode == AuthMode.OPEN:
        if not _loopback(args.host):
            raise ConfigError("'auth.mode' is 'open': the gateway binds to loopback only")
        logging.getLogger("gateway").warning(
            "auth mode is OPEN: every caller is an administrator (local development only)"
        )
    app = create_app(settings)
    # what start-up made (modules, the schema) lives as long as the process: out of the
    # collector's sight, each full collection walks only what requests made
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        ws="websockets-sansio",
        ws_max_size=settings.max_body_bytes,  # a WebSocket message is bounded like a body
        access_log=False,  # a GET /graphql?query=... line would hold the query's values
        # JSON: uvicorn's own lines go through the root logger's JSON format too
        log_config=None if settings.logging.format == LogFormat.JSON else LOGGING_CONFIG,
    )
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def cmd_worker(args: argparse.Namespace) -> int:
    """Run an arq worker."""
    from arq.worker import Worker

    from gateway.metrics.tracing import configure_tracing
    from workers.settings import worker_settings

    settings = _settings(args)
    configure_tracing(settings.telemetry, "worker")
    if args.metrics_port is not None:  # several workers on one host: one port each
        settings = replace(
            settings, metrics=replace(settings.metrics, worker_port=args.metrics_port)
        )
    worker = Worker(**worker_settings(settings))
    worker.run()
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    """Load the deterministic demo data into the configured archives."""
    settings = _settings(args)
    counts = asyncio.run(seed_archives(settings, args.seed, args.patients, args.truth))
    for source, n in counts.items():
        print(f"{source}: {n} instances")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """Sync studies from one source to another in this process, with a progress bar."""
    from gateway.server.cli.sync import run_sync

    body: dict[str, object] = {"from": args.source, "to": args.destination}
    if args.study:
        body["studyInstanceUids"] = args.study
    if args.patient:
        body["patientId"] = args.patient
    if args.all:
        body["all"] = True
    body.update(dryRun=args.dry_run, verify=not args.no_verify, conflictStrategy=args.conflicts)
    return asyncio.run(run_sync(_settings(args), body, quiet=args.quiet))


def cmd_reidentify(args: argparse.Namespace) -> int:
    """Admin only: the original identity behind a pseudonym; every use is audited."""
    from gateway.deid import reidentify
    from gateway.runtime import Runtime

    async def run() -> dict[str, object]:
        runtime = await Runtime.create(_settings(args))
        try:
            return await reidentify(
                runtime.sessions,
                runtime.settings.mapping_key,
                args.project,
                args.pseudonym,
                args.actor,
            )
        finally:
            await runtime.aclose()

    print(json.dumps(asyncio.run(run()), indent=2, default=str))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Write schema.graphql, or with --check fail when it drifted."""
    from resolvers.schema import SCHEMA_FILE, schema_sdl, write_schema

    if args.check:
        current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
        if current != schema_sdl():
            print("schema.graphql is out of date: run `pacs-gateway schema`", file=sys.stderr)
            return 1
        return 0
    print(write_schema())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the database migrations (the gateway and the workers also do at start)."""
    from gateway.db.engine import migrate

    settings = _settings(args)
    asyncio.run(migrate(settings.database_url))
    print("ok: database schema at the newest migration")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a configuration file."""
    settings = _settings(args)
    print(f"ok: {len(settings.sources)} sources ({', '.join(s.id for s in settings.sources)})")
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    """Start the local PACS stack alone and write its gateway.toml."""
    from gateway.devstack.demo import run_stack

    return run_stack(Path(args.config_out))


def cmd_demo(args: argparse.Namespace) -> int:
    """Local stack + demo data + worker + gateway; Ctrl-C stops everything."""
    from gateway.devstack.demo import run_demo

    return run_demo(
        host=args.host,
        port=args.port,
        patients=args.patients,
        seed_value=args.seed,
        workdir=Path(args.workdir),
    )


def cmd_viewer_install(args: argparse.Namespace) -> int:
    """Check and unpack the OHIF Viewer's package under /viewer/."""
    try:
        count = viewer.install(args.tarball, args.integrity, args.to)
    except (viewer.InstallError, OSError, tarfile.TarError) as exc:
        print(f"pacs-gateway: viewer not installed: {exc}", file=sys.stderr)
        return 1
    print(f"viewer: {count} files in {args.to}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="pacs-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="gateway.toml (default: $GATEWAY_CONFIG or ./gateway.toml)")
        return p

    p = with_config(sub.add_parser("serve", help="run the gateway"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)
    p = with_config(sub.add_parser("worker", help="run a job worker"))
    p.add_argument(
        "--metrics-port",
        type=int,
        help="serve this worker's /metrics on this port (0: none); default [metrics] worker_port",
    )
    p.set_defaults(func=cmd_worker)
    p = with_config(sub.add_parser("seed", help="load deterministic demo data"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--patients", type=int, default=20)
    p.add_argument("--truth", type=Path, help="write the ground truth JSON here")
    p.set_defaults(func=cmd_seed)
    p = with_config(sub.add_parser("sync", help="copy studies between sources, then verify"))
    p.add_argument("--from", dest="source", required=True, help="source id")
    p.add_argument("--to", dest="destination", required=True, help="destination id")
    p.add_argument("--study", action="append", help="a Study Instance UID (repeatable)")
    p.add_argument("--patient", help="every study of this patient id")
    p.add_argument("--all", action="store_true", help="every study of the source")
    p.add_argument("--dry-run", action="store_true", help="report what would move")
    p.add_argument("--no-verify", action="store_true", help="skip the verification")
    p.add_argument(
        "--conflicts", default=ConflictStrategy.REPORT_ONLY, choices=list(ConflictStrategy)
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sync)
    p = with_config(
        sub.add_parser("reidentify", help="admin: reveal a pseudonym's identity (audited)")
    )
    p.add_argument("--project", required=True)
    p.add_argument("--pseudonym", required=True)
    p.add_argument("--actor", required=True, help="who asks, e.g. admin:jdoe (recorded)")
    p.set_defaults(func=cmd_reidentify)
    p = sub.add_parser("demo", help="local PACS stack with demo data, worker and gateway")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--patients", type=int, default=20)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workdir", default="var/demo")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("stack", help="start the local PACS stack only")
    p.add_argument("--config-out", default="var/stack/gateway.toml")
    p.set_defaults(func=cmd_stack)
    p = sub.add_parser("viewer-install", help="install the OHIF Viewer's dist/ (make setup)")
    p.add_argument("tarball", type=Path, help="@ohif/app's package, from `npm pack`")
    p.add_argument("--integrity", required=True, help="the pinned sha512-... of the package")
    p.add_argument("--to", type=Path, required=True, help="where the viewer's files go")
    p.set_defaults(func=cmd_viewer_install)
    p = sub.add_parser("schema", help="write schema.graphql from the code")
    p.add_argument("--check", action="store_true", help="fail if schema.graphql drifted")
    p.set_defaults(func=cmd_schema)
    with_config(sub.add_parser("check-config", help="validate a config file")).set_defaults(
        func=cmd_check_config
    )
    with_config(sub.add_parser("migrate", help="apply the database migrations")).set_defaults(
        func=cmd_migrate
    )
    identity.add_parsers(sub, with_config)
    index.add_parsers(sub, with_config)
    importing.add_parsers(sub, with_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: configuration problems print one line and exit 2."""
    configure_logging()  # text until a command has read its [logging] settings
    quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"pacs-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
