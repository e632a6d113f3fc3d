"""A slow or dead Redis never blocks a user call (issue 11), on a real redis-server.

The call that opened a breaker used to write the transition to Redis on the calling thread:
9-19 s with Redis paused, 2-3 s while it restarted, and the transition stamped late. Now
every Redis round trip is on the write-behind thread; these tests pause Redis with SIGSTOP,
kill and restart it on the same port, and check, by recording which thread uses a Redis
connection, that no call ever does; that the transition is stamped when it happened; that
the shared state re-syncs when Redis is back; and that another process sees it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from modelwatch import semconv
from modelwatch._writebehind import WRITER
from modelwatch.resilience import hooks
from modelwatch.resilience._shared import OPEN_UNTIL_KEY, redis_storage
from modelwatch.resilience.breaker import Breaker
from modelwatch.resilience.policy import BreakerPolicy
from support.redis_outage import Watched, restart
from support.servers import RedisServer
from support.servers._process import wait_until

pytestmark = pytest.mark.servers

PEER = Path(__file__).with_name("_shared_peer.py")


def fail(b: Breaker, n: int) -> None:
    for _ in range(n):
        permit = b.admit()
        assert permit is not None
        b.record_failure(permit, semconv.ERROR_TIMEOUT, 0.01)


def test_a_paused_redis_never_blocks_a_call_and_the_state_resyncs(
    redis_server_factory: Callable[[], RedisServer], watched: Callable[[str], Watched]
) -> None:
    server = redis_server_factory()
    redis_side = watched(server.url)
    namespace = f"mw-{uuid.uuid4().hex[:8]}"
    policy = BreakerPolicy(
        storage=redis_storage(redis_side.client, namespace), sync_interval_s=0.05
    )
    here, there = Breaker("paused", policy), Breaker("paused", policy)
    here.sync_now()  # storage built and read once, deliberately on this thread
    there.sync_now()
    seen: list[hooks.BreakerTransition] = []
    hooks.add_listener(lambda e: seen.append(e) if isinstance(e, hooks.BreakerTransition) else None)
    redis_side.threads.clear()

    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        for _ in range(200):  # calls and reads while Redis does not answer
            assert there.admit() is not None
            assert there.state == "closed"
        fail(here, 3)  # this call opens the breaker
        assert here.state == "open"
        assert here.admit() is None
        opened = next(e for e in seen if e.to_state == "open")
        # the background thread is stuck on the paused server; calls never were
        wait_until(lambda: redis_side.threads, message="the write-behind thread to try Redis")
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert WRITER.drain(10.0)
    assert set(redis_side.threads) == {WRITER.name}, redis_side.threads

    # the transition was stamped when it happened, not when the write landed
    raw = redis.Redis.from_url(server.url)
    try:
        state, until = raw.mget(
            [
                f"{namespace}:paused:pybreaker:state",
                f"{namespace}:paused:pybreaker:{OPEN_UNTIL_KEY}",
            ]
        )
    finally:
        raw.close()
    assert state == b"open"
    assert opened.retry_after_s is not None
    assert float(until) == pytest.approx(opened.at + opened.retry_after_s, abs=1e-3)
    # and the other guard re-syncs from Redis, in the background, once asked
    wait_until(lambda: there.state == "open", timeout=5.0, message="the other guard to adopt")
    assert set(redis_side.threads) == {WRITER.name}


def test_a_restarted_redis_gets_the_state_again_and_another_process_sees_it(
    redis_server_factory: Callable[[], RedisServer], watched: Callable[[str], Watched]
) -> None:
    server = redis_server_factory()
    redis_side = watched(server.url)
    namespace = f"mw-{uuid.uuid4().hex[:8]}"
    policy = BreakerPolicy(
        storage=redis_storage(redis_side.client, namespace), sync_interval_s=0.05, open_s=30.0
    )
    here = Breaker("restarted", policy)
    here.sync_now()
    redis_side.threads.clear()
    server.process.stop(signal.SIGKILL)  # Redis is gone
    fail(here, 3)  # opened on local state
    assert here.admit() is None
    restart(server)
    # the pending transition is written once Redis answers again (readers trigger the sync)
    raw = redis.Redis.from_url(server.url)
    try:
        wait_until(
            lambda: (
                here.state == "open"
                and raw.get(f"{namespace}:restarted:pybreaker:state") == b"open"
            ),
            timeout=10.0,
            message="the open state to reach the restarted Redis",
        )
    finally:
        raw.close()
    assert set(redis_side.threads) == {WRITER.name}
    with subprocess.Popen(
        [sys.executable, str(PEER), server.url, namespace, "restarted"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as peer:
        assert peer.stdin is not None
        assert peer.stdout is not None
        lines = iter(peer.stdout)
        assert next(line for line in lines if line.split()[:1] in (["ready"], ["rejected"]))
        peer.stdin.write("go\n")
        peer.stdin.flush()
        verdict = next(
            line.split() for line in lines if line.split()[:1] in (["rejected"], ["timeout"])
        )
        peer.stdin.close()
        assert peer.wait(5) == 0
    assert verdict[0] == "rejected"
    assert verdict[2] == "open"


def test_a_fork_while_the_background_thread_talks_to_redis_leaves_the_child_working(
    redis_server: RedisServer, watched: Callable[[str], Watched]
) -> None:
    """Celery prefork forks whenever it likes: a lock the write-behind thread held mid round
    trip must not wedge the child's shared state."""
    url = redis_server.fresh_url()
    policy = BreakerPolicy(storage=redis_storage(watched(url).client, f"mw-{uuid.uuid4().hex[:8]}"))
    b = Breaker("forked", policy)
    b.sync_now()
    with b._sync._servicing, b._lock:  # as if the background thread were mid round trip
        pid = os.fork()
        if pid == 0:
            signal.alarm(5)  # a deadlock ends the child with SIGALRM
            fail(b, 3)
            b.sync_now()
            os._exit(0 if b.state == "open" and not b._sync.pending else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_client_without_a_socket_timeout_is_warned_about(redis_server: RedisServer) -> None:
    from structlog.testing import capture_logs

    from modelwatch.capture.budget import redis_store

    bare = redis.Redis.from_url(redis_server.url)
    timed = redis.Redis.from_url(redis_server.url, socket_timeout=0.5)
    try:
        with capture_logs() as logs:
            redis_storage(bare)
            redis_storage(bare)  # once per client
            redis_store(timed)
        warned = [e for e in logs if e["event"] == "modelwatch.redis.no_timeout"]
        assert [e["where"] for e in warned] == ["redis_storage()"]
    finally:
        bare.close()
        timed.close()
