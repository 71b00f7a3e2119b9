"""Token buckets per caller (gateway/server/ratelimit.py) and job input summaries."""

from __future__ import annotations

import json

import pytest

from gateway.auth.principal import OPEN_CALLER, Principal
from gateway.core.enums import Role
from gateway.server import ratelimit
from gateway.server.ratelimit import TokenBuckets, caller_key
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
