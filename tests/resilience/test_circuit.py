"""``circuit(name)``: decorator and with-block, sync and async twins, sharing the guard;
plus the concurrency promises (threads, tasks, cancellation) of the guard itself."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from modelwatch import semconv
from modelwatch._clock import ManualClock
from modelwatch.errors import CircuitOpenError, ConfigurationError
from modelwatch.resilience.circuit import circuit, get_breaker, reset_circuits
from modelwatch.resilience.policy import BreakerPolicy

POLICY = BreakerPolicy(jitter=0.0)


class Refused(ConnectionRefusedError):
    pass


@pytest.fixture(autouse=True)
def fresh_circuits() -> Iterator[None]:
    reset_circuits()
    yield
    reset_circuits()


def test_decorator_counts_failures_opens_and_then_refuses_without_calling(
    clock: ManualClock,
) -> None:
    calls = []

    @circuit("db", POLICY, clock=clock)
    def query(x: int) -> int:
        calls.append(x)
        raise Refused("db down")

    for i in range(3):
        with pytest.raises(Refused):
            query(i)
    with pytest.raises(CircuitOpenError) as info:
        query(99)
    assert calls == [0, 1, 2]
    assert info.value.name == "db"
    assert info.value.retry_after_s == pytest.approx(10.0)
    assert query.__name__ == "query"  # wraps keeps the identity


def test_same_exception_object_and_return_value_pass_through(clock: ManualClock) -> None:
    boom = ValueError("bad input")

    @circuit("same", POLICY, clock=clock)
    def f(fail: bool) -> str:
        if fail:
            raise boom
        return "ok"

    assert f(False) == "ok"
    with pytest.raises(ValueError) as info:
        f(True)
    assert info.value is boom


async def test_async_decorator_is_a_twin(clock: ManualClock) -> None:
    calls = []

    @circuit("adb", POLICY, clock=clock)
    async def query() -> str:
        calls.append(1)
        raise Refused("down")

    for _ in range(3):
        with pytest.raises(Refused):
            await query()
    with pytest.raises(CircuitOpenError):
        await query()
    assert len(calls) == 3
    clock.advance(10.0)
    with pytest.raises(Refused):
        await query()  # the trial ran and failed
    assert get_breaker("adb").retry_after_s == pytest.approx(20.0)


def test_with_block_shares_the_breaker_by_name(clock: ManualClock) -> None:
    for _ in range(3):
        with pytest.raises(Refused), circuit("vec", POLICY, clock=clock):
            raise Refused("down")
    ran = False
    with pytest.raises(CircuitOpenError):
        with circuit("vec"):
            ran = True
    assert not ran
    clock.advance(10.0)
    for _ in range(2):
        with circuit("vec") as breaker:
            pass
    assert breaker.state == "closed"


async def test_async_with_block(clock: ManualClock) -> None:
    for _ in range(3):
        with pytest.raises(Refused):
            async with circuit("avec", POLICY, clock=clock):
                raise Refused("down")
    with pytest.raises(CircuitOpenError):
        async with circuit("avec"):
            pass


def test_a_pluggable_classifier_decides_what_counts(clock: ManualClock) -> None:
    class Invalid(Exception):
        pass

    def classify(exc: BaseException) -> str:
        return semconv.ERROR_BAD_REQUEST if isinstance(exc, Invalid) else semconv.ERROR_OTHER

    @circuit("br", POLICY, clock=clock, classify=classify)
    def f() -> None:
        raise Invalid("400")

    for _ in range(10):
        with pytest.raises(Invalid):
            f()
    assert get_breaker("br").state == "closed"


def test_conflicting_policies_for_one_name_are_loud() -> None:
    circuit("conf", BreakerPolicy(open_s=5.0))
    circuit("conf")  # no policy: reuse
    with pytest.raises(ConfigurationError):
        circuit("conf", BreakerPolicy(open_s=6.0))


def test_rejection_is_a_span_event(clock: ManualClock, telemetry: Any) -> None:
    from modelwatch.capture._telemetry import telemetry as current

    get_breaker("ev", POLICY, clock).force_open()
    with current().tracer.start_as_current_span("outer"):
        with pytest.raises(CircuitOpenError):
            with circuit("ev"):
                pass
    (span,) = telemetry.spans("outer")
    assert [e.name for e in span.events] == [semconv.EVENT_REJECTED]


# ---------------------------------------------------------------------- concurrency
def test_64_threads_against_an_open_breaker_make_zero_calls(clock: ManualClock) -> None:
    calls = []
    breaker = get_breaker("t64", POLICY, clock)
    breaker.force_open()

    @circuit("t64")
    def primary() -> None:
        calls.append(1)

    barrier = threading.Barrier(64)
    refused = []

    def worker() -> None:
        barrier.wait()
        for _ in range(20):
            try:
                primary()
            except CircuitOpenError:
                refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == []
    assert len(refused) == 64 * 20


def test_64_threads_in_half_open_run_exactly_the_permitted_trials(clock: ManualClock) -> None:
    policy = BreakerPolicy(jitter=0.0, half_open_trials=3, close_after=10)
    breaker = get_breaker("trials", policy, clock)
    breaker.force_open()
    clock.advance(10.0)
    inside = threading.Semaphore(0)
    release = threading.Event()

    @circuit("trials")
    def primary() -> None:
        inside.release()
        release.wait(5)

    barrier = threading.Barrier(64)
    outcomes: list[str] = []

    def worker() -> None:
        barrier.wait()
        try:
            primary()
            outcomes.append("ran")
        except CircuitOpenError:
            outcomes.append("refused")

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    for _ in range(3):
        assert inside.acquire(timeout=5)
    assert not inside.acquire(timeout=0.05)  # nobody else got in
    assert breaker.trials_in_flight == 3
    release.set()
    for t in threads:
        t.join()
    assert outcomes.count("ran") == 3
    assert outcomes.count("refused") == 61


async def test_1000_tasks_against_an_open_breaker_make_zero_calls(clock: ManualClock) -> None:
    calls = []
    get_breaker("a1000", POLICY, clock).force_open()

    @circuit("a1000")
    async def primary() -> None:
        calls.append(1)
        await asyncio.sleep(0)

    results = await asyncio.gather(*(primary() for _ in range(1000)), return_exceptions=True)
    assert calls == []
    assert all(isinstance(r, CircuitOpenError) for r in results)


async def test_1000_tasks_in_half_open_run_one_trial(clock: ManualClock) -> None:
    breaker = get_breaker("a-trial", POLICY, clock)
    breaker.force_open()
    clock.advance(10.0)
    calls = []
    gate = asyncio.Event()

    @circuit("a-trial")
    async def primary() -> None:
        calls.append(1)
        await gate.wait()

    tasks = [asyncio.create_task(primary()) for _ in range(1000)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert len(calls) == 1
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 999


async def test_cancelling_a_trial_mid_call_leaves_no_permit_held(clock: ManualClock) -> None:
    breaker = get_breaker("cancel", POLICY, clock)
    breaker.force_open()
    clock.advance(10.0)
    started = asyncio.Event()

    @circuit("cancel")
    async def primary() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(primary())
    await started.wait()
    assert breaker.trials_in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.trials_in_flight == 0
    assert breaker.state == "half_open"  # cancellation did not count as a failure

    @circuit("cancel")
    async def healthy() -> str:
        return "ok"

    assert await healthy() == "ok"  # the slot is free at once, no lease wait


async def test_cancelling_inside_an_async_with_block_releases_too(clock: ManualClock) -> None:
    breaker = get_breaker("cancel-with", POLICY, clock)
    breaker.force_open()
    clock.advance(10.0)
    started = asyncio.Event()

    async def body() -> None:
        async with circuit("cancel-with"):
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.trials_in_flight == 0


def test_decorating_a_generator_is_refused_at_decoration_time() -> None:
    def gen() -> Iterator[int]:
        yield 1

    async def agen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        circuit("gen")(gen)
    with pytest.raises(TypeError, match="generator"):
        circuit("gen")(agen)
