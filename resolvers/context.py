"""The per-request context: the caller, the runtime, and this request's dataloaders."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from typing import Any

from aiodataloader import DataLoader
from strawberry.types import Info as _Info

from gateway.auth.policy import readable_sources
from gateway.auth.principal import Principal
from gateway.core.enums import SourceRole
from gateway.core.errors import Unauthenticated
from gateway.federation.fanout import Strikes
from gateway.jobs.store import JobStore
from gateway.runtime import Check, Runtime
from resolvers.cursors import CURSOR_KEY
from resolvers.loaders import JobEventsLoader, Loaders, make_loaders


class HealthLoader(DataLoader[str, Check]):
    """Pings each source once per request, all concurrently."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime

    async def batch_load_fn(self, keys: list[str]) -> list[Check]:
        """One ping per distinct source id."""
        return list(await asyncio.gather(*(self.runtime.check_source(k) for k in keys)))


@dataclass
class Context:
    """What resolvers see as `info.context`."""

    runtime: Runtime
    health: HealthLoader
    loaders: Loaders
    strikes: Strikes = field(default_factory=Strikes)
    caller: Principal | None = None  # None: not authenticated (only `login` answers)
    token: str | None = None  # the bearer token the caller came with, to re-check it
    address: str | None = None
    connection_params: dict[str, Any] | None = None  # a WebSocket's connection_init payload
    identity_reads: set[str] = field(default_factory=set)  # opaque refs, for the audit trail
    request: Any = None
    response: Any = None
    extras: dict[str, Any] = field(default_factory=dict)  # further per-request loaders

    @functools.cached_property
    def job_events(self) -> JobEventsLoader:
        """This request's loader of job events, made on first use."""
        return JobEventsLoader(JobStore(self.runtime.sessions))

    @property
    def all_query_sources(self) -> list[str]:
        """Ids of the sources with role `query`, in configuration order."""
        return self.runtime.settings.ids_with_role(SourceRole.QUERY)

    @property
    def query_sources(self) -> list[str]:
        """The query sources this caller may read."""
        if self.caller is None:
            return []
        return readable_sources(self.caller, self.all_query_sources)

    async def still_authenticated(self) -> None:
        """Raise `Unauthenticated` once the caller's token has expired or been revoked (for
        long subscriptions); a caller without a token (open mode) stays. The caller's rights
        are refreshed too: roles or groups changed since the subscription began apply."""
        if self.token is None or self.caller is None or self.caller.via == "open":
            return
        fresh = await self.runtime.auth.authenticate(self.token)
        self.caller = fresh
        if fresh is None:
            raise Unauthenticated("the token has expired or was revoked")

    def require_caller(self) -> Principal:
        """The authenticated caller; `Unauthenticated` when there is none."""
        if self.caller is None:
            raise Unauthenticated("authentication required")
        return self.caller


def make_context(
    runtime: Runtime,
    request: Any = None,
    response: Any = None,
    caller: Principal | None = None,
    token: str | None = None,
    address: str | None = None,
) -> Context:
    """A fresh context with fresh dataloaders over the sources `caller` may read."""
    query = runtime.settings.ids_with_role(SourceRole.QUERY)
    readable = readable_sources(caller, query) if caller is not None else []
    key = getattr(runtime, "cursor_key", None)
    if key is not None:  # this request's cursors are sealed with the runtime's key
        CURSOR_KEY.set(key)
    strikes = Strikes()
    return Context(
        runtime=runtime,
        health=HealthLoader(runtime),
        loaders=make_loaders(runtime.sources, readable, strikes),
        strikes=strikes,
        request=request,
        response=response,
        caller=caller,
        token=token,
        address=address,
    )


Info = _Info[Context, None]
