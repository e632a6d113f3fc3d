"""Budgets shared through a real redis-server (issue 15): exact across processes and threads,
surviving process restarts, never blocking a call, counting locally while Redis is away and
sending what was counted when it is back."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from modelwatch._writebehind import WRITER
from modelwatch.capture import budget
from modelwatch.capture._budget_store import NANOS_PER_USD
from support.redis_outage import Watched, enable_persistence, restart
from support.servers import RedisServer
from support.servers._process import wait_until

pytestmark = pytest.mark.servers

PEER = Path(__file__).with_name("_budget_peer.py")
PRICE_NANOS = 600_000  # 0.0006 USD


def run_peers(
    url: str, namespace: str, name: str, peers: int, threads: int, charges: int
) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, str(PEER), url, namespace, name, str(threads), str(charges)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(peers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().split() == ["ready"]
        for p in procs:  # all start together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * peers, outputs
    return outputs


def stored(url: str, namespace: str, name: str, b: budget.Budget) -> int:
    client = redis.Redis.from_url(url)
    try:
        raw = client.get(budget.redis_store(client, namespace).key(name, b._start))
    finally:
        client.close()
    return 0 if raw is None else int(raw)


def test_spend_is_exact_across_2_processes_x_64_threads(
    redis_server: RedisServer, watched: Callable[[str], Watched]
) -> None:
    url, namespace = redis_server.fresh_url(), f"mw-{uuid.uuid4().hex[:8]}"
    outputs = run_peers(url, namespace, "shared", peers=2, threads=64, charges=100)
    expected = 2 * 64 * 100 * PRICE_NANOS
    with budget.Budget(
        "shared", limit_usd=1e6, store=budget.redis_store(watched(url).client, namespace)
    ) as here:
        here.sync_now()
        assert stored(url, namespace, "shared", here) == expected  # to the nano-dollar
        assert here.spent_usd == expected / NANOS_PER_USD  # 7.68 USD
    # each peer, after flushing, saw at least its own spend and at most everyone's
    seen = [float(out.split()[-1]) for out in outputs]
    assert all(64 * 100 * PRICE_NANOS / NANOS_PER_USD <= s <= 7.68 for s in seen), seen


def test_spend_survives_the_restart_of_the_processes(
    redis_server: RedisServer, watched: Callable[[str], Watched]
) -> None:
    url, namespace = redis_server.fresh_url(), f"mw-{uuid.uuid4().hex[:8]}"
    run_peers(url, namespace, "daily", peers=1, threads=2, charges=10)  # spent, then exited
    with budget.Budget(
        "daily", limit_usd=1e6, store=budget.redis_store(watched(url).client, namespace)
    ) as fresh:
        assert WRITER.drain()  # a new budget reads the store as soon as it is opened
        assert fresh.spent_usd == 20 * PRICE_NANOS / NANOS_PER_USD
        fresh.add(0.0006)
        # the exported gauge is this process's share (the rules sum it over processes)
        assert fresh.own_used == pytest.approx(0.0006 / 1e6)
        assert budget.flush()
        assert stored(url, namespace, "daily", fresh) == 21 * PRICE_NANOS


def test_redis_killed_mid_run_calls_go_on_counting_locally_then_resync_without_loss(
    redis_server_factory: Callable[[], RedisServer], watched: Callable[[str], Watched]
) -> None:
    server = redis_server_factory()
    enable_persistence(server)  # what was stored before the kill survives it
    redis_side = watched(server.url)
    namespace = f"mw-{uuid.uuid4().hex[:8]}"
    threads, before, after = 8, 200, 300
    midway = threading.Barrier(threads + 1)
    go_on = threading.Event()

    def work() -> None:
        for _ in range(before):
            budget.charge(0.0006, {})
        midway.wait()
        go_on.wait()
        for _ in range(after):
            budget.charge(0.0006, {})

    with budget.Budget(
        "outage", limit_usd=1e6, store=budget.redis_store(redis_side.client, namespace)
    ) as b:
        workers = [threading.Thread(target=work, name=f"user-{i}") for i in range(threads)]
        for w in workers:
            w.start()
        midway.wait()
        assert budget.flush()
        assert stored(server.url, namespace, "outage", b) == threads * before * PRICE_NANOS
        server.process.stop(signal.SIGKILL)  # Redis dies mid-run
        go_on.set()
        for w in workers:
            w.join()
        total = threads * (before + after) * PRICE_NANOS
        assert b.spent_usd == total / NANOS_PER_USD  # counted locally meanwhile
        restart(server)
        wait_until(
            lambda: b.spent_usd and stored(server.url, namespace, "outage", b) == total,
            timeout=15.0,
            message="the spend counted during the outage to reach Redis",
        )
        assert b.spent_usd == total / NANOS_PER_USD
    assert set(redis_side.threads) == {WRITER.name}  # no user thread ever used Redis
