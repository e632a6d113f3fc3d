"""The second process of the shared-state test: one breaker on the same Redis keys.

Prints ``ready``; after reading ``go`` on stdin it admits a call every 10 ms and prints
``rejected <seconds since go>`` at the first refusal (or ``timeout`` after 3 s).
"""

from __future__ import annotations

import sys
import time

import redis

from modelwatch.resilience._shared import redis_storage
from modelwatch.resilience.breaker import Breaker
from modelwatch.resilience.policy import BreakerPolicy


def main() -> None:
    url, namespace, name = sys.argv[1:4]
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    policy = BreakerPolicy(storage=redis_storage(client, namespace), sync_interval_s=0.1)
    breaker = Breaker(name, policy)
    permit = breaker.admit()  # one call while closed: the breaker is live and synced
    assert permit is not None
    breaker.record_success(permit, 0.001)
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    start = time.monotonic()
    while time.monotonic() - start < 3.0:
        permit = breaker.admit()
        if permit is None:
            print(f"rejected {time.monotonic() - start:.3f} {breaker.state}", flush=True)
            return
        breaker.record_success(permit, 0.001)
        time.sleep(0.01)
    print("timeout", flush=True)


if __name__ == "__main__":
    main()
