"""The async and streaming twins of the router with plain backends, and the router under
concurrency (64 threads, 1,000 tasks) against an open primary."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from modelwatch import semconv
from modelwatch._clock import ManualClock
from modelwatch.errors import AllBackendsFailedError, StreamInterruptedError
from modelwatch.resilience.policy import BreakerPolicy, RetryPolicy
from modelwatch.resilience.router import Backend, Router

from ._fakes import AsyncScripted, HTTPError, Scripted, classify

NO_JITTER = BreakerPolicy(jitter=0.0)


def router_of(clock: ManualClock, *fns: Any, **kw: Any) -> Router:
    kw.setdefault("breaker", NO_JITTER)
    return Router(
        "ar",
        [Backend(fn, model=f"m{i}", provider="test") for i, fn in enumerate(fns)],
        classify=classify,
        clock=clock,
        **kw,
    )


# ---------------------------------------------------------------------- acall
async def test_acall_fails_over_between_async_backends(clock: ManualClock, telemetry: Any) -> None:
    primary = AsyncScripted("p", ConnectionResetError("reset"))
    backup = AsyncScripted("b", "backup")
    router = router_of(clock, primary, backup)
    assert await router.acall("x") == "backup"
    assert [s.name for s in telemetry.spans() if s.name.startswith("chat")] == [
        "chat m0",
        "chat m1",
    ]
    assert telemetry.counter(semconv.FAILOVERS.name, **{semconv.REASON: "unavailable"}) == 1


async def test_acall_cancels_a_hung_coroutine_at_its_attempt_timeout() -> None:
    cancelled = asyncio.Event()

    async def hung(_: str) -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    async def backup(_: str) -> str:
        return "ok"

    router = Router(
        "ahang",
        [Backend(hung, model="hung", provider="t"), Backend(backup, model="ok", provider="t")],
        attempt_timeout_s=0.05,
    )
    started = time.monotonic()
    assert await router.acall("x") == "ok"
    assert time.monotonic() - started < 2.0  # the hung coroutine sleeps an hour
    assert cancelled.is_set()  # the coroutine itself was cancelled, not just abandoned
    assert router.status()[0].last_error == semconv.ERROR_TIMEOUT


async def test_acall_runs_sync_backends_on_the_pool_and_abandons_them() -> None:
    release = threading.Event()
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def hung(_: str) -> str:
        release.wait(10)
        return "late"

    def backup(_: str) -> str:
        threads.append(threading.get_ident())
        return "ok"

    router = Router(
        "async-sync",
        [Backend(hung, model="hung", provider="t"), Backend(backup, model="ok", provider="t")],
        attempt_timeout_s=0.05,
    )
    try:
        assert await router.acall("x") == "ok"
        assert threads
        assert threads[0] != loop_thread  # never blocks the event loop
    finally:
        release.set()


async def test_acall_retry_sleeps_on_the_clock(clock: ManualClock) -> None:
    only = AsyncScripted("p", HTTPError(429, retry_after_s=3.0), "ok")
    router = router_of(clock, only)
    assert await router.acall("x") == "ok"
    assert clock.sleeps == [3.0]


async def test_acall_cancelled_from_outside_propagates_and_releases(clock: ManualClock) -> None:
    started = asyncio.Event()
    backup_calls = []

    async def slow(_: str) -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    async def backup(_: str) -> str:
        backup_calls.append(1)
        return "b"

    router = router_of(clock, slow, backup)
    breaker = router.breaker("m0")
    breaker.force_open()
    clock.advance(10.0)  # the next call is the half-open trial
    task = asyncio.create_task(router.acall("x"))
    await started.wait()
    assert breaker.trials_in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.trials_in_flight == 0
    assert backup_calls == []  # cancellation is not a reason to fail over


def test_sync_call_can_drive_an_async_backend(clock: ManualClock) -> None:
    router = router_of(clock, AsyncScripted("p", "from a coroutine"))
    assert router.call("x") == "from a coroutine"


# ---------------------------------------------------------------------- streams
def chunks(*items: Any) -> Any:
    def gen(_: str) -> Iterator[Any]:
        for item in items:
            if isinstance(item, BaseException):
                raise item
            yield item

    return gen


def test_stream_fails_over_before_the_first_chunk(clock: ManualClock, telemetry: Any) -> None:
    router = router_of(clock, chunks(ConnectionRefusedError("no")), chunks("a", "b", "c"))
    assert list(router.stream("x")) == ["a", "b", "c"]
    (route,) = telemetry.spans("route ar")
    assert [e.name for e in route.events] == [semconv.EVENT_FAILOVER]
    assert router.status()[1].latency_s is not None  # the stream's success was recorded


def test_stream_break_after_content_is_typed_and_counts(clock: ManualClock) -> None:
    cause = ConnectionResetError("cut")
    router = router_of(clock, chunks("a", "b", cause), chunks("never"))
    got = []
    with pytest.raises(StreamInterruptedError) as info:
        for chunk in router.stream("x"):
            got.append(chunk)
    assert got == ["a", "b"]
    assert info.value.chunks == 2
    assert info.value.kind == semconv.ERROR_UNAVAILABLE
    assert info.value.__cause__ is cause
    assert router.status()[0].last_error == semconv.ERROR_UNAVAILABLE


def test_stream_consumer_breaking_early_releases_without_verdict(
    clock: ManualClock, telemetry: Any
) -> None:
    router = router_of(clock, chunks("a", "b", "c"))
    breaker = router.breaker("m0")
    breaker.force_open()
    clock.advance(10.0)  # trial
    stream = router.stream("x")
    assert next(stream) == "a"
    assert breaker.trials_in_flight == 1
    stream.close()
    assert breaker.trials_in_flight == 0
    assert breaker.state == "half_open"
    (route,) = telemetry.spans("route ar")
    assert route.attributes[semconv.MODELWATCH_STREAM] is True


def test_stream_idle_timeout_breaks_a_hung_stream() -> None:
    release = threading.Event()

    def hangs_after_one(_: str) -> Iterator[str]:
        yield "first"
        release.wait(10)
        yield "late"

    router = Router(
        "idle", [Backend(hangs_after_one, model="m", provider="t")], idle_timeout_s=0.05
    )
    got = []
    try:
        with pytest.raises(StreamInterruptedError) as info:
            for chunk in router.stream("x"):
                got.append(chunk)
        assert got == ["first"]
        assert info.value.kind == semconv.ERROR_TIMEOUT
    finally:
        release.set()


def test_empty_stream_is_a_success(clock: ManualClock) -> None:
    router = router_of(clock, chunks())
    assert list(router.stream("x")) == []
    assert router.status()[0].error_rate == 0.0


def test_stream_with_every_backend_down_raises_before_yielding(clock: ManualClock) -> None:
    router = router_of(
        clock,
        chunks(ConnectionRefusedError("a")),
        chunks(ConnectionRefusedError("b")),
        retry=RetryPolicy(max_retries=0),
    )
    with pytest.raises(AllBackendsFailedError):
        next(router.stream("x"))


async def test_astream_is_the_twin(clock: ManualClock, telemetry: Any) -> None:
    async def broken(_: str) -> AsyncIterator[str]:
        raise ConnectionRefusedError("no")
        yield "never"  # pragma: no cover

    async def good(_: str) -> AsyncIterator[str]:
        for c in ("a", "b"):
            yield c

    async def cut(_: str) -> AsyncIterator[str]:
        yield "a"
        raise ConnectionResetError("cut")

    router = router_of(clock, broken, good)
    assert [c async for c in router.astream("x")] == ["a", "b"]
    router.close()
    router = router_of(clock, cut)
    with pytest.raises(StreamInterruptedError) as info:
        async for _ in router.astream("x"):
            pass
    assert info.value.chunks == 1


async def test_astream_first_chunk_timeout_fails_over() -> None:
    async def slow(_: str) -> AsyncIterator[str]:
        await asyncio.sleep(3600)
        yield "never"

    async def fast(_: str) -> AsyncIterator[str]:
        yield "fast"

    router = Router(
        "afirst",
        [Backend(slow, model="slow", provider="t"), Backend(fast, model="fast", provider="t")],
        first_chunk_timeout_s=0.05,
    )
    assert [c async for c in router.astream("x")] == ["fast"]


# ---------------------------------------------------------------------- concurrency
def test_64_threads_against_an_open_primary_make_zero_calls_to_it(clock: ManualClock) -> None:
    primary, backup = Scripted("p"), Scripted("b", default="b")
    router = router_of(clock, primary, backup)
    router.breaker("m0").force_open()
    barrier = threading.Barrier(64)
    results: list[str] = []

    def worker() -> None:
        barrier.wait()
        for _ in range(10):
            results.append(router.call("x"))

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert primary.calls == []
    assert results == ["b"] * 640


def test_64_threads_in_half_open_send_exactly_one_trial(clock: ManualClock) -> None:
    gate = threading.Event()
    entered = threading.Event()

    def primary(_: str) -> str:
        entered.set()
        gate.wait(5)
        return "p"

    backup = Scripted("b", default="b")
    router = router_of(clock, primary, backup)
    router.breaker("m0").force_open()
    clock.advance(10.0)
    barrier = threading.Barrier(64)
    results: list[str] = []

    def worker() -> None:
        barrier.wait()
        results.append(router.call("x"))

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    assert entered.wait(5)
    deadline = time.monotonic() + 5
    while len(results) < 63 and time.monotonic() < deadline:
        time.sleep(0.005)
    gate.set()
    for t in threads:
        t.join()
    assert results.count("p") == 1
    assert results.count("b") == 63


async def test_1000_tasks_against_an_open_primary_make_zero_calls_to_it(
    clock: ManualClock,
) -> None:
    primary, backup = AsyncScripted("p"), AsyncScripted("b", default="b")
    router = router_of(clock, primary, backup)
    router.breaker("m0").force_open()
    results = await asyncio.gather(*(router.acall("x") for _ in range(1000)))
    assert primary.calls == []
    assert results == ["b"] * 1000


def test_closing_the_routed_stream_closes_the_backends_stream(clock: ManualClock) -> None:
    closed = threading.Event()

    def backend(_: str) -> Iterator[str]:
        try:
            yield "a"
            yield "b"
        finally:
            closed.set()

    router = router_of(clock, backend)  # attempts on the worker pool (the default)
    stream = router.stream("x")
    assert next(stream) == "a"
    stream.close()
    assert closed.is_set()
