"""Breaker state shared through a real redis-server on 127.0.0.1 (pybreaker's storage).

* a breaker opened in this process is honoured by a second process within a second;
* with Redis stopped, breakers are built, admit and open on local state, and never raise.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from modelwatch import semconv
from modelwatch._clock import ManualClock
from modelwatch._writebehind import WRITER
from modelwatch.resilience._shared import redis_storage
from modelwatch.resilience.breaker import Breaker
from modelwatch.resilience.policy import BreakerPolicy

pytestmark = pytest.mark.servers

PEER = Path(__file__).with_name("_shared_peer.py")


@pytest.fixture
def client_for() -> Iterator[Callable[[str], redis.Redis]]:
    """Redis clients that are closed after the test (no stray sockets)."""
    made: list[redis.Redis] = []

    def build(url: str) -> redis.Redis:
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()
        client.connection_pool.disconnect()


def read_verdict(stream: Any) -> list[str]:
    """The peer's next protocol line (structlog may print its own lines in between)."""
    for line in stream:
        words = line.split()
        if words and words[0] in {"ready", "rejected", "timeout"}:
            return list(words)
    raise AssertionError("peer ended without a verdict")


def test_open_breaker_is_honoured_by_another_process_within_a_second(
    redis_server: Any, client_for: Callable[[str], redis.Redis]
) -> None:
    url = redis_server.fresh_url()
    namespace, name = f"mw-{uuid.uuid4().hex[:8]}", "primary"
    policy = BreakerPolicy(storage=redis_storage(client_for(url), namespace), sync_interval_s=0.1)
    here = Breaker(name, policy)
    with subprocess.Popen(
        [sys.executable, str(PEER), url, namespace, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as peer:
        assert peer.stdout is not None
        assert peer.stdin is not None
        assert read_verdict(peer.stdout) == ["ready"]
        for _ in range(3):
            permit = here.admit()
            assert permit is not None
            here.record_failure(permit, semconv.ERROR_UNAVAILABLE, 0.01)
        assert here.state == "open"
        assert WRITER.drain()  # the transition is written behind, off the call path
        assert here.pybreaker.current_state == "open"  # pybreaker's own view of the storage
        peer.stdin.write("go\n")
        peer.stdin.flush()
        verdict = read_verdict(peer.stdout)
        assert verdict[0] == "rejected", verdict
        assert float(verdict[1]) < 1.0
        assert verdict[2] == "open"
        peer.stdin.close()
        assert peer.wait(5) == 0


def test_a_close_through_one_guard_reaches_another_guard_on_the_same_keys(
    redis_server: Any, client_for: Callable[[str], redis.Redis]
) -> None:
    url = redis_server.fresh_url()
    namespace = f"mw-{uuid.uuid4().hex[:8]}"
    policy = BreakerPolicy(
        storage=redis_storage(client_for(url), namespace),
        sync_interval_s=0.01,
        jitter=0.0,
        open_s=0.05,
    )
    a, b = Breaker("x", policy), Breaker("x", policy)  # two guards, one shared record
    for _ in range(3):
        permit = a.admit()
        assert permit is not None
        a.record_failure(permit, semconv.ERROR_TIMEOUT, 0.01)
    assert WRITER.drain()  # a's transition is written behind
    b.sync_now()  # what the background sync does every sync_interval_s
    assert b.state == "open"
    assert b.admit() is None
    time.sleep(0.06)  # a's open time (50 ms, shared with b) ends
    for _ in range(2):
        trial = a.admit()
        assert trial is not None
        a.record_success(trial, 0.01)
    assert a.state == "closed"
    assert WRITER.drain()
    b.sync_now()
    assert b.state == "closed"
    assert b.admit() is not None


def test_a_reopen_elsewhere_extends_an_adopted_open_so_no_early_trial_is_sent(
    redis_server: Any, client_for: Callable[[str], redis.Redis]
) -> None:
    """b adopted a's open; a's open time ended, its trial failed and it re-opened for longer:
    b must take the later end (it used to keep its own, read half-open and send a trial)."""
    clock = ManualClock()
    policy = BreakerPolicy(
        storage=redis_storage(client_for(redis_server.fresh_url()), f"mw-{uuid.uuid4().hex[:8]}"),
        sync_interval_s=3600.0,  # no background adoption: sync_now() is the sync
        jitter=0.0,
        open_s=10.0,
    )
    a, b = Breaker("z", policy, clock=clock), Breaker("z", policy, clock=clock)
    for _ in range(3):
        permit = a.admit()
        assert permit is not None
        a.record_failure(permit, semconv.ERROR_TIMEOUT, 0.01)
    assert WRITER.drain()
    b.sync_now()
    assert b.state == "open"
    clock.advance(10.5)  # both open times (10 s) end
    trial = a.admit()
    assert trial is not None
    a.record_failure(trial, semconv.ERROR_TIMEOUT, 0.01)  # the trial fails: a re-opens, 20 s
    assert a.state == "open"
    assert WRITER.drain()
    b.sync_now()
    assert b.state == "open"
    assert b.admit() is None  # no second trial from b while a's new open time runs
    assert b.retry_after_s == pytest.approx(a.retry_after_s, abs=0.01)
    assert b.retry_after_s > 10.0


def test_background_sync_adopts_without_blocking_the_caller(
    redis_server: Any, client_for: Callable[[str], redis.Redis]
) -> None:
    url = redis_server.fresh_url()
    policy = BreakerPolicy(
        storage=redis_storage(client_for(url), f"mw-{uuid.uuid4().hex[:8]}"), sync_interval_s=0.01
    )
    a, b = Breaker("y", policy), Breaker("y", policy)
    a.force_open()
    deadline = time.monotonic() + 2.0
    while b.admit() is not None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert b.state == "open"
    assert time.monotonic() < deadline


def test_redis_going_away_leaves_local_state_working(
    tmp_path: Path, client_for: Callable[[str], redis.Redis]
) -> None:
    from support.servers import _start_redis

    server = _start_redis(tmp_path / "redis")
    url = f"redis://{server.host}:{server.port}/0"
    policy = BreakerPolicy(storage=redis_storage(client_for(url), "gone"), sync_interval_s=0.01)
    try:
        breaker = Breaker("svc", policy)
        permit = breaker.admit()
        assert permit is not None
        breaker.record_success(permit, 0.01)
    finally:
        server.process.stop()
    time.sleep(0.02)
    started = time.monotonic()
    for _ in range(3):
        permit = breaker.admit()
        assert permit is not None
        breaker.record_failure(permit, semconv.ERROR_UNAVAILABLE, 0.01)
    assert breaker.state == "open"
    assert breaker.admit() is None
    assert time.monotonic() - started < 1.0
    late = Breaker("built-while-down", policy)  # pybreaker's constructor would raise here
    assert late.admit() is not None


def test_reading_the_state_refreshes_it_without_any_calls(
    redis_server: Any, client_for: Callable[[str], redis.Redis]
) -> None:
    url = redis_server.fresh_url()
    policy = BreakerPolicy(
        storage=redis_storage(client_for(url), f"mw-{uuid.uuid4().hex[:8]}"), sync_interval_s=0.01
    )
    a, b = Breaker("z", policy), Breaker("z", policy)
    assert b.state == "closed"
    a.force_open()
    deadline = time.monotonic() + 2.0
    while b.state != "open" and time.monotonic() < deadline:  # what a health check does
        time.sleep(0.005)
    assert b.state == "open"
