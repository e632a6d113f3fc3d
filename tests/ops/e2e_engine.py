"""An instrumented "AI engine" for the end-to-end alerting test, run as its own process.

    python e2e_engine.py FAKE_SERVER_URL PRIMARY BACKUP STREAM_MODEL PORT_FILE

It configures modelwatch with a Prometheus ``/metrics`` endpoint on a free port (written to
``PORT_FILE``), puts a :class:`modelwatch.Router` with two backends in front of the
:class:`~modelwatch.testing.fake_server.FakeModelServer` at ``FAKE_SERVER_URL``, registers the
router's backends as health checks, and sends traffic until it is terminated: routed chat
calls (usage, cost, rate-limit headers) and a streaming call (time to first chunk).

A process of its own because ``modelwatch.configure`` installs the global OpenTelemetry
providers, which must not leak into the rest of the test session. Faults are injected from
the test, into the fake server.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

import modelwatch
from modelwatch import Backend, BreakerPolicy, Router

ROUTER = "summarize"
ANALYSIS = "summarization"
CALL_INTERVAL_S = 0.05


def main() -> int:
    base_url, primary, backup, stream_model, port_path = sys.argv[1:6]
    port_file = Path(port_path)
    config = modelwatch.configure(
        service_name="e2e-engine",
        prometheus_port=0,
        system_metrics=True,  # the dashboards' System row queries these
        prices={primary: {"per_request": 0.001}, backup: {"per_request": 0.002}},
    )
    client = httpx.Client(base_url=base_url, timeout=2.0)

    def chat(model: str) -> Any:
        def call(text: str) -> httpx.Response:
            response = client.post(
                "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": text}]},
            )
            response.raise_for_status()
            return response  # headers carry the x-ratelimit-* quota the router reads

        return call

    def usage(response: httpx.Response) -> Any:
        return response.json()

    router = Router(
        ROUTER,
        [
            Backend(
                chat(primary), model=primary, provider="openai", analysis=ANALYSIS, usage=usage
            ),
            Backend(chat(backup), model=backup, provider="openai", analysis=ANALYSIS, usage=usage),
        ],
        # a short open period and trial calls every second keep the outage visible
        breaker=BreakerPolicy(open_s=1.0, max_open_s=1.0, probe_interval_s=0.5, close_after=2),
        timeout_s=5.0,
        attempt_timeout_s=2.0,
    )
    health = modelwatch.Health()
    health.add_router(router)
    health.start()

    @modelwatch.monitored(model=stream_model, provider="openai", analysis="chat")
    def stream(text: str) -> Iterator[str]:
        body = {
            "model": stream_model,
            "stream": True,
            "messages": [{"role": "user", "content": text}],
        }
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            yield from (line for line in response.iter_lines() if line.startswith("data:"))

    stop = threading.Event()

    def streamer() -> None:
        while not stop.is_set():
            # the engine keeps going through failures: telemetry records them
            with contextlib.suppress(Exception):
                for _ in stream("tell me a short story please"):
                    pass
            stop.wait(0.2)

    threading.Thread(target=streamer, daemon=True).start()
    # a file of its own, renamed into place: log lines from other threads cannot interleave
    partial = port_file.with_suffix(".partial")
    partial.write_text(str(config.prometheus_port))
    partial.replace(port_file)
    try:
        while True:
            with contextlib.suppress(Exception):
                router.call("Summarize: the quick brown fox jumps over the lazy dog. Twice.")
            time.sleep(CALL_INTERVAL_S)
    except KeyboardInterrupt:
        return 0
    finally:
        stop.set()
        health.stop()


if __name__ == "__main__":
    raise SystemExit(main())
