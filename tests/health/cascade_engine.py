"""A service whose health checks depend on Redis, for the real-server cascade tests.

    python cascade_engine.py REDIS_PORT PORT_FILE

Run as its own process, because ``modelwatch.configure`` installs the global OpenTelemetry
providers. It serves modelwatch's Prometheus ``/metrics`` endpoint and ``health.wsgi()`` on
free ports (written to ``PORT_FILE`` as JSON: ``{"metrics": N, "health": M}``) and probes
every half second, with no damping:

- ``redis`` (dependency): ``PING`` on the real Redis;
- ``cache-api`` (dependency, depends on ``redis``): reads the key ``cascade:fail:cache-api``
  from Redis (so it fails when Redis is down) and is down while that key is set — the test
  sets it to make ``cache-api`` fail on its own while Redis is up;
- ``code_review`` (analysis, depends on ``cache-api``): down when Redis is unreachable or
  either ``cascade:fail:code_review`` or ``cascade:fail:cache-api`` is set (it calls it);
- ``google/flan-t5-large`` (model): always ok, on nothing.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import modelwatch

INTERVAL_S = 0.5
FAIL_KEY = "cascade:fail:"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    redis_port, port_path = int(sys.argv[1]), Path(sys.argv[2])
    config = modelwatch.configure(service_name="cascade-engine", prometheus_port=0)
    client = redis.Redis(
        host="127.0.0.1",
        port=redis_port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )

    def redis_probe() -> bool:
        return bool(client.ping())

    def cache_api() -> bool:
        return client.get(FAIL_KEY + "cache-api") is None

    def code_review() -> bool:
        return client.exists(FAIL_KEY + "code_review", FAIL_KEY + "cache-api") == 0

    health = modelwatch.Health(flap_threshold=1, jitter=0.0)
    timing = {"interval_s": INTERVAL_S, "down_interval_s": INTERVAL_S, "timeout_s": 1.0}
    health.add("redis", probe=redis_probe, kind="dependency", **timing)
    health.add("cache-api", probe=cache_api, kind="dependency", depends_on="redis", **timing)
    health.add("code_review", probe=code_review, kind="analysis", depends_on="cache-api", **timing)
    health.add("google/flan-t5-large", probe=lambda: True, kind="model", **timing)
    health.run_once()
    health.start()

    server = make_server("127.0.0.1", 0, health.wsgi(), handler_class=_Quiet)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    ).start()
    ports = {"metrics": config.prometheus_port, "health": server.server_address[1]}
    partial = port_path.with_suffix(".partial")
    partial.write_text(json.dumps(ports))
    partial.replace(port_path)
    try:
        stop.wait()
    finally:
        server.shutdown()
        health.stop()
        modelwatch.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
