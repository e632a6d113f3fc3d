"""The probe pool's thread bound, queued probes' deadlines, and shutdown with probes queued."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from modelwatch.health import Health
from modelwatch.health._workers import ProbePool


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def test_pool_runs_at_most_concurrency_plus_stuck_workers_and_shrinks_when_idle() -> None:
    pool = ProbePool(concurrency=3, idle_timeout_s=0.05)
    gate = threading.Event()
    running: list[int] = []
    lock = threading.Lock()

    def job() -> None:
        with lock:
            running.append(1)
        gate.wait(5.0)

    try:
        for _ in range(10):
            assert pool.submit(job)
        wait_until(lambda: len(running) == 3)
        assert pool.workers == 3  # seven jobs wait for a free worker

        pool.stuck(+2)  # two workers are declared stuck: two more may start
        wait_until(lambda: len(running) == 5)
        assert pool.workers == 5
    finally:
        gate.set()
    wait_until(lambda: len(running) == 10)
    wait_until(lambda: pool.workers == 0)  # idle workers leave
    pool.close()
    assert not pool.submit(job)


def test_pool_rejects_a_zero_concurrency() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        ProbePool(concurrency=0)


def test_a_probe_waiting_for_a_worker_is_not_timed_out_by_the_wait(
    make_health: Callable[..., Health],
) -> None:
    health = make_health(probe_threads=1, flap_threshold=1)

    def slow() -> bool:
        time.sleep(0.2)
        return True

    health.add("slow", probe=slow, timeout_s=1.0)
    health.add("quick", probe=lambda: True, timeout_s=0.1)  # waits ~0.2 s for the only worker

    report = health.run_once()

    assert report.check("slow").status == "ok"  # type: ignore[union-attr]
    quick = report.check("quick")
    assert quick is not None
    assert (quick.status, quick.error) == ("ok", None)
    assert quick.latency_s is not None
    assert quick.latency_s < 0.1  # its clock started when it ran


def test_stop_drops_probes_still_waiting_for_a_worker(
    make_health: Callable[..., Health],
) -> None:
    gate = threading.Event()
    called: list[str] = []
    health = make_health(probe_threads=1)
    health.add("hang", probe=lambda: called.append("hang") or gate.wait(5.0), timeout_s=5.0)
    health.add("queued", probe=lambda: called.append("queued"), timeout_s=5.0)

    assert health.run_pending() == 2
    wait_until(lambda: called == ["hang"])
    health.stop()
    assert health._checks["queued"].run is None  # released at stop
    gate.set()  # the only worker comes back and finds the queued job abandoned
    wait_until(lambda: health._checks["hang"].run is None)
    time.sleep(0.05)  # give the worker the chance it must not take
    assert called == ["hang"]


def test_a_sync_callable_returning_a_coroutine_is_awaited(
    make_health: Callable[..., Health],
) -> None:
    async def answer() -> str:
        await asyncio.sleep(0)
        return "degraded"

    health = make_health()
    health.add("lambda-async", probe=lambda: answer())  # noqa: PLW0108 - the point of it

    assert health.run_once().check("lambda-async").status == "degraded"  # type: ignore[union-attr]


def test_an_object_with_async_call_is_an_async_probe(make_health: Callable[..., Health]) -> None:
    seen: list[Any] = []

    class Pinger:
        async def __call__(self) -> bool:
            seen.append(threading.current_thread().name)
            return True

    health = make_health()
    health.add("pinger", probe=Pinger())

    assert health.run_once().check("pinger").status == "ok"  # type: ignore[union-attr]
    assert seen == ["modelwatch-health-loop"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_can_probe_again_even_with_a_hung_probe_in_the_parent(
    make_health: Callable[..., Health],
) -> None:
    gate = threading.Event()
    health = make_health(flap_threshold=1)
    state = {"hang": True}

    def probe() -> bool:
        if state["hang"]:
            gate.wait(5.0)
        return True

    health.add("m", probe=probe, timeout_s=0.05, interval_s=0.05)
    try:
        with health:
            wait_until(lambda: health.report().check("m").status == "down")  # type: ignore[union-attr]
            state["hang"] = False  # the parent's probe thread stays stuck on the gate
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: no threads from the parent, probing stopped
                try:
                    running = health.running
                    status = health.run_once().check("m").status  # type: ignore[union-attr]
                    os.write(write, f"{running} {status}".encode())
                finally:
                    os._exit(0)
            os.close(write)
            answer = os.read(read, 100).decode()
            os.close(read)
            os.waitpid(pid, 0)
        assert answer == "False ok"
    finally:
        gate.set()
