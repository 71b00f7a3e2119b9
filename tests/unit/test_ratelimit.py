"""Token buckets per caller (gateway/server/ratelimit.py) and job input summaries.

The shared buckets use a real Redis: $REDIS_URL's or 127.0.0.1:6379's when one answers
(as the test stack does), else a `redis-server` started here on a free port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.auth.principal import OPEN_CALLER, Principal
from gateway.core.enums import Role
from gateway.devstack.stack import redis_reachable
from gateway.server import ratelimit
from gateway.server.ratelimit import SharedBuckets, TimeShares, TokenBuckets, caller_key
from resolvers.job_types import input_summary


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("a")
    assert wait == 0.5 and buckets.retry_after(wait) == 1
    assert buckets.take("b") == 0.0  # another caller has their own bucket
    clock.now = 0.5
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0
    clock.now = 100.0
    assert [buckets.take("a") for _ in range(3)] == [0.0] * 3  # refilled up to the burst only
    assert buckets.take("a") > 0


def test_a_time_budget_goes_into_debt_and_is_repaid() -> None:
    """The time budget: costs charged after the fact, a debt owed at the refill rate."""
    clock = Clock()
    budget = TokenBuckets(0.25, 2.0, clock)  # a quarter of a second a second, 2 s at once
    assert budget.owed("a") == 0.0
    budget.charge("a", 1.5)
    assert budget.owed("a") == 0.0  # within the burst
    budget.charge("a", 1.5)  # 0.5 left, 1.5 taken: 1 s of debt
    assert budget.owed("a") == pytest.approx(4.0) and budget.owed("b") == 0.0
    clock.now = 3.0
    assert budget.owed("a") == pytest.approx(1.0)
    clock.now = 20.0  # repaid and full again: never more than the burst
    assert budget.owed("a") == 0.0
    budget.charge("a", 5.0)  # a debt of at most a burst
    assert budget.owed("a") == pytest.approx(8.0)
    off = TokenBuckets(0, 1, clock)
    off.charge("a", 100.0)
    assert off.owed("a") == 0.0


def test_time_is_charged_and_owed_only_while_callers_compete() -> None:
    clock = Clock()
    shares = TimeShares(TokenBuckets(0.25, 1.0, clock))
    assert shares.begin("script") is False  # alone
    shares.end("script", 30.0, contended=False)
    assert shares.owed("script") == 0.0 and shares.budget.owed("script") == 0.0  # not charged
    assert shares.begin("script") is False
    assert shares.begin("user") is True  # the script is being served
    shares.end("script", 3.0, contended=False)  # the user came during it: charged
    assert shares.budget.owed("script") == pytest.approx(4.0)  # debt capped at the burst
    assert shares.owed("script") == pytest.approx(4.0)  # the user is being served
    shares.end("user", 0.01, contended=True)
    assert shares.owed("script") == 0.0  # nobody else: no wait, the debt stays
    assert shares.begin("script") is False and shares.begin("script") is False
    assert shares.owed("script") == 0.0  # its own requests are no competition
    shares.end("script", 0.0, False)
    shares.end("script", 0.0, False)
    assert shares._active == {}


def test_a_caller_has_at_most_max_active_requests_served() -> None:
    shares = TimeShares(TokenBuckets(0, 1), max_active=2)
    shares.begin("a")
    assert not shares.full("a")
    shares.begin("a")
    assert shares.full("a") and not shares.full("b")
    shares.end("a", 0.0, False)
    assert not shares.full("a")
    assert not TimeShares(TokenBuckets(0, 1)).full("a")  # 0: no bound


def test_rate_zero_is_no_limit() -> None:
    buckets = TokenBuckets(rate=0, burst=1)
    assert not buckets.enabled and all(buckets.take("a") == 0.0 for _ in range(1000))


def test_the_table_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "MAX_KEYS", 100)
    buckets = TokenBuckets(rate=1.0, burst=5, clock=Clock())
    for i in range(1000):
        buckets.take(f"address:{i}")
    assert len(buckets._buckets) <= 100


def test_callers_are_users_tokens_or_addresses() -> None:
    user = Principal(user_id="u1", username="ann", roles=frozenset({Role.RADIOLOGIST}))
    token = Principal(
        user_id="u1", username="ann", roles=frozenset({Role.RADIOLOGIST}), token_id="t9"
    )
    assert caller_key(user, "10.0.0.1", open_mode=False) == "user:u1"
    assert caller_key(token, "10.0.0.1", open_mode=False) == "token:t9"
    assert caller_key(None, "10.0.0.1", open_mode=False) == "address:10.0.0.1"
    assert caller_key(OPEN_CALLER, "10.0.0.2", open_mode=True) == "address:10.0.0.2"


def test_inputs_over_the_bound_are_summarized() -> None:
    small = {"from": "a", "to": "b", "studyInstanceUids": ["1.2.3"]}
    assert input_summary(small) is small
    uids = [f"1.2.826.0.1.3680043.8.498.{i}" for i in range(10_000)]
    big = {"from": "a", "to": "b", "studyInstanceUids": uids, "dryRun": True}
    summary = input_summary(big)
    assert summary["studyInstanceUids"] == {"count": 10_000, "first": uids[:3]}
    assert summary["summarized"] is True and summary["bytes"] == len(
        json.dumps(big, separators=(",", ":"))
    )
    assert summary["from"] == "a" and summary["dryRun"] is True
    assert len(json.dumps(summary)) < 1024
    long_text = input_summary({"note": "x" * 10_000})
    assert len(long_text["note"]) == 257


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for url in (os.environ.get("REDIS_URL"), "redis://127.0.0.1:6379/0"):
        if url and redis_reachable(url):
            yield url
            return
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (run `make setup`)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home: Path = tmp_path_factory.mktemp("redis")
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(home)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not redis_reachable(url):
            assert time.monotonic() < deadline and process.poll() is None, "redis did not start"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[list[Redis]]:
    """Two connections, as two gateway processes would have."""
    both = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    yield both
    for r in both:
        await r.aclose()


def _shared(redis: Redis, prefix: str, rate: float = 0.5, burst: int = 5) -> SharedBuckets:
    buckets = SharedBuckets(TokenBuckets(rate=rate, burst=burst))
    buckets.share(redis, prefix)
    return buckets


async def test_processes_sharing_redis_draw_from_one_budget(clients: list[Redis]) -> None:
    prefix = f"test-{uuid.uuid4()}"
    one, two = (_shared(r, prefix) for r in clients)
    waits = [await (one if i % 2 else two).take("user:u1") for i in range(5)]
    assert waits == [0.0] * 5  # the burst, whichever process takes
    wait = await one.take("user:u1")
    assert 1.9 < await two.take("user:u1") and 1.9 < wait <= 2.0  # 1 token at 0.5/s
    assert one.retry_after(wait) == 2
    assert await two.take("token:t9") == 0.0  # another caller has their own bucket
    # the processes' own buckets were not used: each still has its whole burst
    assert [one.local.take("user:u1") for _ in range(5)] == [0.0] * 5
    # a bucket is forgotten once it would be full again: (burst - tokens) / rate, + 1 s
    ttl = await clients[0].pttl(one.key("user:u1"))
    assert 10_000 < ttl <= 11_000


async def test_the_rate_is_refilled_by_elapsed_time(clients: list[Redis]) -> None:
    one = _shared(clients[0], f"test-{uuid.uuid4()}", rate=20.0, burst=2)
    assert [await one.take("a") for _ in range(2)] == [0.0, 0.0]
    assert await one.take("a") > 0
    await asyncio.sleep(0.12)  # 2.4 tokens at 20/s, the burst at most
    assert [await one.take("a") for _ in range(2)] == [0.0, 0.0]
    assert await one.take("a") > 0


async def test_redis_down_falls_back_to_this_process(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    buckets = _shared(down, "test", rate=0.5, burst=3)
    with caplog.at_level(logging.WARNING, logger="gateway.server.ratelimit"):
        assert [await buckets.take("a") for _ in range(3)] == [0.0] * 3
        assert await buckets.take("a") > 0  # this process's bucket still limits
    warnings = [r for r in caplog.records if r.name == "gateway.server.ratelimit"]
    assert len(warnings) == 1 and "own buckets" in warnings[0].getMessage()
    await down.aclose()


async def test_a_silent_redis_does_not_hold_requests() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    buckets = _shared(silent, "test")
    started = time.monotonic()
    assert await buckets.take("a") == 0.0
    assert time.monotonic() - started < 2
    started = time.monotonic()
    assert await buckets.take("a") == 0.0  # not asked again for a while
    assert time.monotonic() - started < 0.1
    server.close()
    await silent.aclose()


async def test_no_rate_asks_nothing(clients: list[Redis]) -> None:
    prefix = f"test-{uuid.uuid4()}"
    off = _shared(clients[0], prefix, rate=0, burst=1)
    assert all([await off.take("a") == 0.0 for _ in range(100)])
    assert await clients[0].exists(off.key("a")) == 0
