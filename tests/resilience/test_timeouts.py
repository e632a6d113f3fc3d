"""One timer per event loop for awaited attempts: asyncio.timeout's semantics, bounded."""

from __future__ import annotations

import asyncio
import threading

import pytest

from modelwatch.resilience import _timeouts
from modelwatch.resilience.deadline import AttemptTimeoutError, await_within


async def _forever() -> None:
    await asyncio.sleep(3600)


async def test_a_short_deadline_after_a_long_one_still_fires_on_time() -> None:
    long = asyncio.ensure_future(await_within(_forever(), 3600.0, "long"))
    await asyncio.sleep(0)  # the long one is armed first
    with pytest.raises(AttemptTimeoutError, match="short"):
        await await_within(_forever(), 0.02, "short")
    assert not long.done()
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long


async def test_a_callers_cancel_stays_a_cancellation() -> None:
    task = asyncio.ensure_future(await_within(_forever(), 3600.0, "x"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_an_outer_timeout_that_ends_first_wins() -> None:
    with pytest.raises(TimeoutError) as info:
        async with asyncio.timeout(0.02):
            await await_within(_forever(), 3600.0, "inner")
    assert not isinstance(info.value, AttemptTimeoutError)


async def test_a_zero_timeout_times_out_at_the_next_loop_turn() -> None:
    with pytest.raises(AttemptTimeoutError):
        await await_within(_forever(), 0.0, "zero")


async def test_the_task_goes_on_after_a_timeout_without_a_pending_cancel() -> None:
    with pytest.raises(AttemptTimeoutError):
        await await_within(_forever(), 0.01, "first")
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    assert await await_within(asyncio.sleep(0, result=7), 5.0, "second") == 7


async def test_awaits_that_ended_leave_a_bounded_heap_and_one_timer() -> None:
    loop = asyncio.get_running_loop()
    watch = _timeouts.watch_for(loop)
    for i in range(5000):
        assert await await_within(asyncio.sleep(0, result=i), 3600.0, "x") == i
    assert watch._live == 0
    assert len(watch._heap) <= 2 * 0 + _timeouts._SLACK + 1  # compacted as it grew
    armed = watch._handle
    await await_within(asyncio.sleep(0), 3600.0, "later")
    assert watch._handle is armed  # a later deadline does not re-arm the timer


def test_each_event_loop_has_its_own_watch() -> None:
    """Loops on two threads at once (a probe on a foreign loop next to the app's)."""
    outcomes: list[str] = []

    async def one(label: str) -> None:
        for _ in range(20):
            try:
                await await_within(_forever(), 0.005, label)
            except AttemptTimeoutError:
                outcomes.append(label)
            assert await await_within(asyncio.sleep(0, result=label), 5.0, label) == label

    threads = [threading.Thread(target=asyncio.run, args=(one(f"t{i}"),)) for i in range(2)]
    for t in threads:
        t.start()
    asyncio.run(one("main"))
    for t in threads:
        t.join(30)
    assert sorted(set(outcomes)) == ["main", "t0", "t1"]
    assert len(outcomes) == 60
