"""A process charging a Redis-backed budget from many threads (tests/capture/test_budget_redis).

``python _budget_peer.py URL NAMESPACE BUDGET THREADS CHARGES``: prints ``ready``, waits for
``go`` on stdin, makes THREADS x CHARGES charges of ``PRICE`` USD, flushes the store and
prints ``done <spent_usd as this process sees it>``.
"""

from __future__ import annotations

import sys
import threading

import redis

from modelwatch.capture import budget

PRICE = 0.0006  # google/flan-t5-large's shipped price per request


def main() -> None:
    url, namespace, name, threads, charges = sys.argv[1:6]
    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0)
    b = budget.Budget(name, limit_usd=1e6, store=budget.redis_store(client, namespace))
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    start = threading.Barrier(int(threads))

    def work() -> None:
        start.wait()
        for _ in range(int(charges)):
            budget.charge(PRICE, {"gen_ai.request.model": "google/flan-t5-large"})

    workers = [threading.Thread(target=work) for _ in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert budget.flush(10.0)
    b.sync_now()
    print(f"done {b.spent_usd!r}", flush=True)


if __name__ == "__main__":
    main()
