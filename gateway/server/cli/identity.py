"""`pacs-gateway user ...`, `token create`, `audit verify|export`: identity from the shell."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from gateway.auth import audit
from gateway.core.enums import Role
from gateway.core.errors import GatewayError
from gateway.core.settings import load_settings
from gateway.core.timing import as_utc
from gateway.db.models import AuditEvent
from gateway.runtime import Runtime

T = TypeVar("T")
CLI_ACTOR = "cli"


def _run(args: argparse.Namespace, work: Callable[[Runtime], Awaitable[T]]) -> T:
    async def go() -> T:
        runtime = await Runtime.create(load_settings(args.config))
        try:
            return await work(runtime)
        finally:
            await runtime.aclose()

    return asyncio.run(go())


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if args.generate_password:
        return secrets.token_urlsafe(12)
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return None


def cmd_user_add(args: argparse.Namespace) -> int:
    """Add a user; with --generate-password the new password is printed once."""
    password = _password(args)

    async def work(runtime: Runtime) -> None:
        roles = [Role(r.upper()) for r in args.role]
        await runtime.auth.create_user(args.name, roles, CLI_ACTOR, password=password)

    try:
        _run(args, work)
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"user {args.name} added" + (f", password: {password}" if args.generate_password else ""))
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    """Every user: name, roles, active."""

    async def work(runtime: Runtime) -> list[Any]:
        return await runtime.auth.users()

    for u in _run(args, work):
        state = "active" if u.active else "disabled"
        print(f"{u.username}\t{','.join(u.roles)}\t{state}")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    """Deactivate a user (their sessions and tokens end)."""

    async def work(runtime: Runtime) -> None:
        user = await runtime.auth.user_by_name(args.name)
        if user is None:
            raise GatewayError(f"no user named {args.name!r}")
        await runtime.auth.update_user(user.id, CLI_ACTOR, active=False)

    try:
        _run(args, work)
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"user {args.name} disabled")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    """An API token for a user, printed once."""

    async def work(runtime: Runtime) -> str:
        user = await runtime.auth.user_by_name(args.user)
        if user is None:
            raise GatewayError(f"no user named {args.user!r}")
        made = await runtime.auth.create_api_token(user.id, args.name, args.days, CLI_ACTOR)
        return made.token

    try:
        print(_run(args, work))
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Check the audit chain; exit 1 naming the first broken link."""

    async def work(runtime: Runtime) -> tuple[int, int | None]:
        return await audit.verify(runtime.sessions)

    count, broken = _run(args, work)
    if broken is not None:
        print(f"audit chain BROKEN at event {broken} (after {count - 1} good events)")
        return 1
    print(f"audit chain intact: {count} events")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    """Audit events since a time, as JSON lines on stdout."""
    since = datetime.fromisoformat(args.since) if args.since else None

    async def work(runtime: Runtime) -> int:
        n = 0
        async for row in audit.rows(runtime.sessions):
            if since is not None and as_utc(row.at) < as_utc(since):
                continue
            print(json.dumps(_event(row), default=str))
            n += 1
        return n

    _run(args, work)
    return 0


def _event(row: AuditEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "objectType": row.object_type,
        "objectRef": row.object_ref,
        "outcome": row.outcome or "ok",
        "address": row.address,
        "details": row.detail,
        "hash": row.hash,
    }


def add_parsers(
    sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    """The `user`, `token` and `audit` subcommands."""
    user = sub.add_parser("user", help="local users").add_subparsers(dest="action", required=True)
    p = with_config(user.add_parser("add", help="add a user"))
    p.add_argument("name")
    p.add_argument("--role", action="append", required=True, choices=[r.lower() for r in Role])
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--generate-password", action="store_true", help="make one and print it")
    p.set_defaults(func=cmd_user_add)
    with_config(user.add_parser("list", help="list users")).set_defaults(func=cmd_user_list)
    p = with_config(user.add_parser("disable", help="deactivate a user"))
    p.add_argument("name")
    p.set_defaults(func=cmd_user_disable)
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    p = with_config(token.add_parser("create", help="create an API token (printed once)"))
    p.add_argument("name")
    p.add_argument("--user", required=True)
    p.add_argument("--days", type=int, default=None, help="expires after this many days")
    p.set_defaults(func=cmd_token_create)
    trail = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="action", required=True
    )
    with_config(trail.add_parser("verify", help="check the hash chain")).set_defaults(
        func=cmd_audit_verify
    )
    p = with_config(trail.add_parser("export", help="events as JSON lines"))
    p.add_argument("--since", help="ISO 8601 time")
    p.set_defaults(func=cmd_audit_export)
