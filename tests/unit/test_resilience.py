"""Guard: one deadline per call, retries for idempotent reads only, circuit breaker."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.core.errors import (
    AuthError,
    CircuitOpen,
    NotFound,
    NotSupported,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.core.settings import SourceConfig
from gateway.sources.http.errors import status_error
from gateway.sources.resilience import CircuitBreaker, Guard, source_at_fault


def _guard(**kw: object) -> Guard:
    cfg = SourceConfig(id="s", kind="orthanc", url="http://h", **kw)  # type: ignore[arg-type]
    return Guard(cfg, backoff_s=0.001)


async def test_deadline_gives_typed_timeout() -> None:
    g = _guard(timeout_s=0.1, retries=0)
    start = time.monotonic()
    with pytest.raises(SourceTimeout):
        await g.call("find", lambda: asyncio.sleep(5))
    assert time.monotonic() - start < 0.5


async def test_idempotent_reads_retry_writes_do_not() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise SourceUnavailable("s", "refused")
        return "ok"

    assert await _guard(retries=2).call("find", flaky) == "ok"
    assert calls == 3
    calls = 0
    with pytest.raises(SourceUnavailable):
        await _guard(retries=2).call("store", flaky, idempotent=False)
    assert calls == 1


async def test_protocol_errors_are_not_retried() -> None:
    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise SourceProtocolError("s", "garbage")

    with pytest.raises(SourceProtocolError):
        await _guard(retries=3).call("find", bad)
    assert calls == 1


async def test_breaker_opens_then_probes() -> None:
    g = _guard(retries=0, breaker_threshold=2, breaker_cooldown_s=0.05)

    async def down() -> None:
        raise SourceUnavailable("s", "refused")

    for _ in range(2):
        with pytest.raises(SourceUnavailable):
            await g.call("find", down)
    with pytest.raises(CircuitOpen):
        await g.call("find", down)
    await asyncio.sleep(0.06)

    async def up() -> str:
        return "ok"

    assert await g.call("find", up) == "ok"
    assert g.breaker.state == "closed"
    assert g.stats.calls == 3 and g.stats.errors == 2


def test_breaker_half_open_allows_one_probe() -> None:
    now = [0.0]
    b = CircuitBreaker(1, 10, clock=lambda: now[0])
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 11
    assert b.allow() and not b.allow()
    b.failure()
    assert b.state == "open"


# -- one deadline per call ------------------------------------------------------------


async def test_deadline_covers_every_attempt() -> None:
    g = _guard(timeout_s=0.2, retries=2)
    calls = 0

    async def hang() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(5)

    start = time.monotonic()
    with pytest.raises(SourceTimeout):
        await g.call("find", hang)
    assert time.monotonic() - start < 0.3  # not (1 + retries) x timeout
    assert calls == 1


async def test_retries_only_while_time_remains() -> None:
    g = Guard(SourceConfig(id="s", kind="orthanc", url="http://h", timeout_s=0.3, retries=5), 0.1)
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise SourceUnavailable("s", "refused")

    start = time.monotonic()
    with pytest.raises(SourceUnavailable):
        await g.call("find", refused)
    # attempt 0.05, backoff 0.1, attempt 0.05, then 0.1 left < backoff 0.2: stop
    assert calls == 2
    assert time.monotonic() - start < 0.3


async def test_a_slow_attempt_leaves_less_time_to_the_retry() -> None:
    g = _guard(timeout_s=0.3, retries=1)
    calls = 0

    async def slow_then_hang() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.2)
            raise SourceUnavailable("s", "reset")
        await asyncio.sleep(5)

    start = time.monotonic()
    with pytest.raises(SourceTimeout):
        await g.call("find", slow_then_hang)
    assert calls == 2
    assert 0.28 < time.monotonic() - start < 0.4


async def test_waiting_for_a_slot_counts_against_the_deadline() -> None:
    g = _guard(timeout_s=0.2, retries=0, max_concurrency=1)
    start = time.monotonic()
    results = await asyncio.gather(
        *(g.call("find", lambda: asyncio.sleep(5)) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, SourceTimeout) for r in results)
    assert time.monotonic() - start < 0.5  # queued calls do not wait k x timeout (0.6 s)
    # the third waits for a slot to the end; the second may be handed the slot just as its
    # deadline comes (the first's timeout frees it at the same instant), then its call times out
    assert sum("slot" in str(r) for r in results) >= 1


async def test_a_queue_timeout_does_not_trip_the_breaker() -> None:
    g = _guard(timeout_s=0.1, retries=0, max_concurrency=1, breaker_threshold=2)
    await asyncio.gather(
        *(g.call("find", lambda: asyncio.sleep(5)) for _ in range(3)), return_exceptions=True
    )
    assert g.breaker.failures == 1 and g.breaker.state == "closed"


# -- which failures count towards the breaker --------------------------------------------


async def _fail_times(g: Guard, err: Exception, n: int) -> None:
    async def fail() -> None:
        raise err

    for _ in range(n):
        with pytest.raises(type(err)):
            await g.call("find", fail)


async def test_breaker_opens_on_an_archive_answering_500() -> None:
    g = _guard(retries=0, breaker_threshold=3)
    await _fail_times(g, SourceProtocolError("s", "find: HTTP 500"), 3)
    assert g.breaker.state == "open"
    with pytest.raises(CircuitOpen):
        await g.call("find", lambda: asyncio.sleep(0))


async def test_breaker_opens_on_garbage_answers() -> None:
    g = _guard(retries=0, breaker_threshold=2)
    await _fail_times(g, SourceProtocolError("s", "find: malformed HTTP answer"), 2)
    assert g.breaker.state == "open"


@pytest.mark.parametrize(
    "err",
    [
        NotFound("s", "find: HTTP 404", status=404),
        NotSupported("s", "find: HTTP 501", status=501),
        AuthError("s", "find: HTTP 401", status=401),
        SourceProtocolError("s", "find: HTTP 400", status=400),
    ],
)
async def test_request_faults_do_not_open_the_breaker(err: Exception) -> None:
    g = _guard(retries=0, breaker_threshold=2)
    await _fail_times(g, err, 4)
    assert g.breaker.state == "closed" and g.breaker.failures == 0


async def test_a_request_fault_resets_the_failure_count() -> None:
    g = _guard(retries=0, breaker_threshold=3)
    await _fail_times(g, SourceProtocolError("s", "find: HTTP 500", status=500), 2)
    await _fail_times(g, NotFound("s", "find: HTTP 404", status=404), 1)
    await _fail_times(g, SourceProtocolError("s", "find: HTTP 500", status=500), 2)
    assert g.breaker.state == "closed"


def test_source_at_fault() -> None:
    assert source_at_fault(SourceTimeout("s", "x"))
    assert source_at_fault(SourceUnavailable("s", "x"))
    assert source_at_fault(SourceProtocolError("s", "find: HTTP 502", status=502))
    assert source_at_fault(SourceProtocolError("s", "C-FIND: AttributeError"))
    assert not source_at_fault(SourceProtocolError("s", "find: HTTP 422", status=422))
    assert not source_at_fault(NotFound("s", "x"))


def test_the_status_decides_not_the_message() -> None:
    # an error that merely mentions an HTTP 4xx, with no status, is the source's fault
    assert source_at_fault(SourceProtocolError("s", "find: HTTP 404 in a part header"))
    assert source_at_fault(SourceProtocolError("s", "find: upstream said HTTP 400"))
    assert not source_at_fault(SourceProtocolError("s", "find: bad request", status=400))
    assert source_at_fault(SourceProtocolError("s", "find: redirected", status=302))


async def test_an_http_4xx_text_without_status_opens_the_breaker() -> None:
    g = _guard(retries=0, breaker_threshold=2)
    await _fail_times(g, SourceProtocolError("s", "find: HTTP 404"), 2)
    assert g.breaker.state == "open"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 422, 429, 500, 501, 502, 504])
def test_status_errors_carry_their_status(status: int) -> None:
    err = status_error(status, "s", "find")
    assert err.status == status and err.detail == f"find: HTTP {status}"
    assert source_at_fault(err) is (status in (429, 500, 502, 504))  # 501: not supported


async def test_a_cancelled_probe_does_not_lock_the_source_out() -> None:
    g = _guard(retries=0, breaker_threshold=1, breaker_cooldown_s=0.01, timeout_s=5)

    async def down() -> None:
        raise SourceUnavailable("s", "refused")

    with pytest.raises(SourceUnavailable):
        await g.call("find", down)
    await asyncio.sleep(0.02)  # half-open: the next call is the one probe
    with pytest.raises(TimeoutError):  # the caller's own, shorter deadline cancels the probe
        await asyncio.wait_for(g.call("find", lambda: asyncio.sleep(5)), 0.05)
    assert g.stats.errors == 2, "the cancelled call is counted"

    async def up() -> str:
        return "ok"

    assert await g.call("find", up) == "ok"
    assert g.breaker.state == "closed"
