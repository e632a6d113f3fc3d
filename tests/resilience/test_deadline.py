"""The worker pool that lets a caller abandon a sync attempt, and deadlines."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from modelwatch._clock import ManualClock
from modelwatch.resilience.deadline import AttemptTimeoutError, Deadline, WorkerPool, await_within

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


def test_run_returns_the_result_and_reraises_the_same_exception_object() -> None:
    pool = WorkerPool(2)
    assert pool.run(lambda a, b=0: a + b, (1,), {"b": 2}, 1.0, "add") == 3
    boom = ValueError("boom")

    def fail() -> None:
        raise boom

    with pytest.raises(ValueError) as info:
        pool.run(fail, (), None, 1.0, "fail")
    assert info.value is boom


def test_run_carries_the_callers_context_into_the_worker() -> None:
    pool = WorkerPool(1)
    token = var.set("from caller")
    try:
        assert pool.run(var.get, (), None, 1.0, "ctx") == "from caller"
    finally:
        var.reset(token)


def test_a_hung_call_is_abandoned_and_a_queued_one_never_starts() -> None:
    pool = WorkerPool(1)
    release = threading.Event()
    started: list[str] = []

    def hang() -> None:
        started.append("hang")
        release.wait(10)

    def queued() -> None:
        started.append("queued")

    t0 = time.monotonic()
    with pytest.raises(AttemptTimeoutError) as info:
        pool.run(hang, (), None, 0.05, "hang")
    assert info.value.timeout_s == 0.05
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(AttemptTimeoutError):
        pool.run(queued, (), None, 0.05, "queued")  # the only worker is stuck
    assert time.monotonic() - t0 < 3.0  # the hung call waits 10 s
    release.set()
    assert pool.run(lambda: "free again", (), None, 1.0, "next") == "free again"
    assert started == ["hang"]  # the abandoned queued task was skipped, not run late
    assert pool.threads == 1


def test_threads_are_daemons_and_bounded() -> None:
    pool = WorkerPool(3)
    release = threading.Event()
    for _ in range(5):
        with pytest.raises(AttemptTimeoutError):
            pool.run(release.wait, (10,), None, 0.01, "w")
    release.set()
    assert pool.threads == 3
    workers = [t for t in threading.enumerate() if t.name.startswith("modelwatch-attempt")]
    assert workers
    assert all(t.daemon for t in workers)


async def test_submit_is_awaitable_and_await_within_cancels() -> None:
    pool = WorkerPool(1)
    assert await asyncio.wrap_future(pool.submit(lambda: 42)) == 42
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(AttemptTimeoutError):
        await await_within(forever(), 0.02, "forever")
    assert cancelled.is_set()


async def test_await_within_lets_the_backends_own_timeout_error_through() -> None:
    own = TimeoutError("the client's own")

    async def client_timeout() -> None:
        raise own

    with pytest.raises(TimeoutError) as info:
        await await_within(client_timeout(), 5.0, "x")
    assert info.value is own


def test_deadline_caps_attempts_by_what_is_left(clock: ManualClock) -> None:
    deadline = Deadline(clock, 30.0)
    assert deadline.cap(25.0) == 25.0
    clock.advance(10.0)
    assert deadline.cap(25.0) == 20.0
    clock.advance(25.0)
    assert deadline.remaining() == 0.0
    assert Deadline(clock, None).cap(None) == float("inf")


def _alive(name: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(name))


def test_idle_workers_leave_after_idle_s() -> None:
    from support.servers import wait_until

    pool = WorkerPool(4, name="mw-idle-test", idle_s=0.05)
    release = threading.Event()
    for _ in range(3):  # three workers, each stuck for a moment
        pool.submit(release.wait, (5,))
    wait_until(lambda: pool.threads == 3, timeout=5, message="three workers started")
    release.set()
    wait_until(
        lambda: pool.threads == 0 and _alive("mw-idle-test") == 0,
        timeout=5,
        message="idle workers left",
    )
    assert pool.run(lambda: "still works", (), None, 1.0, "after") == "still works"


def test_close_lets_idle_workers_go_and_busy_ones_after_their_task() -> None:
    from support.servers import wait_until

    pool = WorkerPool(4, name="mw-close-test", idle_s=60)
    release = threading.Event()
    busy = pool.submit(release.wait, (5,))
    for _ in range(2):
        pool.run(lambda: None, (), None, 1.0, "quick")
    wait_until(lambda: pool.threads == 2, timeout=5, message="two workers")
    pool.close()
    wait_until(lambda: pool.threads == 1, timeout=5, message="the idle worker left")
    release.set()
    assert busy.result(timeout=5) is True
    wait_until(
        lambda: pool.threads == 0 and _alive("mw-close-test") == 0,
        timeout=5,
        message="the busy worker left after its task",
    )
