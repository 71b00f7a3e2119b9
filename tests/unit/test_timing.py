"""The meter of a request's own time (gateway/core/timing.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.core.timing import METER, Meter, charge, metered


def _busy(seconds: float) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        pass


async def test_a_meter_counts_the_steps_not_the_waits() -> None:
    async def work() -> int:
        await asyncio.sleep(0.2)  # waiting: not charged
        _busy(0.05)
        await asyncio.sleep(0)
        _busy(0.05)
        return 7

    meter = Meter()
    assert await metered(work(), meter) == 7
    assert 0.1 <= meter.seconds < 0.18, meter.seconds


async def test_a_thread_s_time_is_charged_to_the_current_meter_only() -> None:
    charge(1.0)  # no meter: nothing to charge, no error
    meter = Meter()
    reset = METER.set(meter)
    try:
        charge(0.25)
    finally:
        METER.reset(reset)
    charge(1.0)
    assert meter.seconds == 0.25


async def test_errors_and_cancellation_pass_through_a_meter() -> None:
    async def fails() -> None:
        _busy(0.02)
        raise ValueError("x")

    meter = Meter()
    with pytest.raises(ValueError):
        await metered(fails(), meter)
    assert meter.seconds >= 0.02
    caught: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            caught.append("inside")
            raise

    task = asyncio.ensure_future(metered(waits(), Meter()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert caught == ["inside"]
