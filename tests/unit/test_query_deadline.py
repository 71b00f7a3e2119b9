"""The overall query deadline, and a failed source not asked again within one request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import strawberry
from graphql import GraphQLError, OperationType

from gateway.auth.principal import OPEN_CALLER
from gateway.core.settings import Settings, SourceConfig
from gateway.runtime import Runtime
from gateway.sources.base import PatientQuery, PatientRecord, StudyQuery, StudyRecord
from resolvers.context import make_context
from resolvers.limits import DEADLINE_CODE, QueryDeadline, extensions
from resolvers.queries import Query

NAME = "Müller^Jürgen"


@dataclass
class FakeSource:
    """An archive answering after `delay_s` (forever when None)."""

    config: SourceConfig
    delay_s: float | None = 0.0
    calls: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.config.id

    async def _wait(self, op: str) -> None:
        self.calls.append(op)
        await asyncio.sleep(3600 if self.delay_s is None else self.delay_s)

    async def find_patients(self, query: PatientQuery) -> list[PatientRecord]:
        await self._wait("find_patients")
        return [PatientRecord("P1", name=NAME)]

    async def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        await self._wait("find_studies")
        return [StudyRecord("1.2.3", patient_id="P1", patient_name=NAME)]


@dataclass
class FakeAudit:
    saturated: bool = False
    entries: list[Any] = field(default_factory=list)

    def submit(self, entry: Any) -> None:
        self.entries.append(entry)


@dataclass
class FakeRuntime:
    settings: Settings
    sources: dict[str, Any]
    audit: FakeAudit = field(default_factory=FakeAudit)


def runtime(*sources: FakeSource) -> Runtime:
    settings = Settings(sources=tuple(s.config for s in sources))
    return cast(Runtime, FakeRuntime(settings, {s.id: s for s in sources}))


def source(id: str, timeout_s: float = 5.0, delay_s: float | None = 0.0) -> FakeSource:
    return FakeSource(SourceConfig(id=id, kind="orthanc", timeout_s=timeout_s), delay_s)


PATIENTS = """query($name: String) {
  patients(filter: {name: $name}, consistency: LIVE) {
    totalCount
    sourceResults { source { id } status error }
    edges { node { patientId studies { studyInstanceUid } } }
  }
}"""


async def run(rt: Runtime, deadline_s: float | None = None) -> tuple[Any, float]:
    schema = strawberry.Schema(query=Query, extensions=extensions(deadline_s))
    start = time.monotonic()
    result = await schema.execute(
        PATIENTS,
        variable_values={"name": "Müller*"},
        context_value=make_context(rt, caller=OPEN_CALLER),
    )
    return result, time.monotonic() - start


async def test_deadline_stops_the_query_with_a_code() -> None:
    rt = runtime(source("a"), source("hang", timeout_s=5, delay_s=None))
    result, elapsed = await run(rt, deadline_s=0.2)
    assert elapsed < 1.0  # the deadline, not the 5 s source timeout
    assert result.data is None
    assert [e.extensions["code"] for e in result.errors] == [DEADLINE_CODE]
    message = result.errors[0].formatted["message"]
    assert message == "query deadline exceeded (0.2 s)"
    assert "Müller" not in str(result.errors[0].formatted)


async def test_default_deadline_is_largest_source_timeout_plus_margin() -> None:
    ext = QueryDeadline(margin_s=2.5)
    ext.execution_context = cast(Any, type("E", (), {}))()
    ext.execution_context.context = make_context(
        runtime(source("a", 1), source("b", 7)), caller=OPEN_CALLER
    )
    assert ext.seconds() == 9.5
    assert QueryDeadline(deadline_s=1.5).seconds() == 1.5


async def test_a_source_timeout_is_data_not_a_deadline_error() -> None:
    rt = runtime(source("a"), source("hang", timeout_s=0.2, delay_s=None))
    result, elapsed = await run(rt)
    assert result.errors is None
    statuses = {r["source"]["id"]: r["status"] for r in result.data["patients"]["sourceResults"]}
    assert statuses == {"a": "OK", "hang": "TIMEOUT"}
    assert result.data["patients"]["edges"][0]["node"]["studies"] == [{"studyInstanceUid": "1.2.3"}]
    assert elapsed < 0.2 + 0.3  # the source timeout, not the 8 s query deadline


async def test_a_timed_out_source_is_not_asked_again_in_the_same_request() -> None:
    hang = source("hang", timeout_s=0.2, delay_s=None)
    rt = runtime(source("a"), hang)
    await run(rt)
    assert hang.calls == ["find_patients"]  # the nested studies level skipped it
    await run(rt)
    assert hang.calls == ["find_patients"] * 2  # the next request asks again


async def outlive_deadline(operation: OperationType) -> str:
    """Work 0.05 s inside QueryDeadline(0.01 s).on_execute, as strawberry drives it:
    "finished", or the error the extension raised."""
    ext = QueryDeadline(deadline_s=0.01)
    ext.execution_context = cast(Any, type("E", (), {}))()
    ext.execution_context.operation_type = operation
    hook = ext.on_execute()
    await hook.__anext__()
    try:
        await asyncio.sleep(0.05)
    except asyncio.CancelledError as stopped:  # the deadline fired: hand it to the extension
        try:
            await hook.athrow(stopped)
        except GraphQLError as error:
            return error.message
        raise
    with pytest.raises(StopAsyncIteration):
        await hook.__anext__()
    return "finished"


async def test_subscriptions_are_not_bounded() -> None:
    assert await outlive_deadline(OperationType.QUERY) == "query deadline exceeded (0.01 s)"
    assert await outlive_deadline(OperationType.SUBSCRIPTION) == "finished"
