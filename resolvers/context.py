"""The per-request context: the caller, the runtime, and this request's dataloaders."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from typing import Any

from aiodataloader import DataLoader
from strawberry.types import Info as _Info

from gateway.federation.fanout import Strikes
from gateway.jobs.store import JobStore
from gateway.runtime import Check, Runtime
from resolvers.loaders import JobEventsLoader, Loaders, make_loaders


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking. Anonymous until authentication exists."""

    id: str = "anonymous"
    roles: tuple[str, ...] = ()


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
    caller: Caller = field(default_factory=Caller)
    request: Any = None
    response: Any = None
    extras: dict[str, Any] = field(default_factory=dict)  # further per-request loaders

    @functools.cached_property
    def job_events(self) -> JobEventsLoader:
        """This request's loader of job events, made on first use."""
        return JobEventsLoader(JobStore(self.runtime.sessions))

    @property
    def query_sources(self) -> list[str]:
        """Ids of the sources with role `query`, in configuration order."""
        return self.runtime.settings.ids_with_role("query")


def make_context(runtime: Runtime, request: Any = None, response: Any = None) -> Context:
    """A fresh context with fresh dataloaders."""
    query = runtime.settings.ids_with_role("query")
    strikes = Strikes()
    return Context(
        runtime=runtime,
        health=HealthLoader(runtime),
        loaders=make_loaders(runtime.sources, query, strikes),
        strikes=strikes,
        request=request,
        response=response,
    )


Info = _Info[Context, None]
