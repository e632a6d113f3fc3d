"""Benchmark: health endpoint latency and thread count with hung probes.

50 checks, of which 10 hang forever (sync probes blocked on an event that is never set,
the worst case: each pins a thread). The registry probes in the background while a client
sends ``GET /health/`` to a real uvicorn server over keep-alive, for the whole run.
Reports the request latency (median, p99, max) and the threads alive over time.

    .venv/bin/python benchmarks/bench_health.py                 # 1 minute
    .venv/bin/python benchmarks/bench_health.py --minutes 10    # the issue's 10 minutes

Intervals are short on purpose (1 s, timeout 0.5 s, so ~60 probe rounds a minute): far
more scheduling and timeouts than production defaults (30 s) would cause in the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import sys
import threading
import time
from typing import Any

import httpx
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from modelwatch.health import Health


def build(
    checks: int, hung: int, interval_s: float, timeout_s: float
) -> tuple[Health, dict[str, int]]:
    """A registry with ``checks`` checks: ``hung`` hang forever, a quarter of the rest async."""
    never = threading.Event()
    calls: dict[str, int] = {"sync": 0, "async": 0, "hung": 0}
    lock = threading.Lock()

    def count(key: str) -> None:
        with lock:
            calls[key] += 1

    def healthy() -> bool:
        count("sync")
        return True

    async def healthy_async() -> bool:
        count("async")
        await asyncio.sleep(0.001)
        return True

    def hang() -> bool:
        count("hung")
        never.wait()  # forever
        return True

    health = Health()
    healthy_count = checks - hung
    for i in range(checks):
        if i < hung:
            probe: Any = hang
            kind = "dependency"
        elif i < hung + healthy_count // 4:
            probe, kind = healthy_async, "analysis"
        else:
            probe, kind = healthy, "model"
        health.add(
            f"check-{i:02d}",
            probe=probe,
            kind=kind,
            interval_s=interval_s,
            timeout_s=timeout_s,
            critical=i % 10 == 5 and i >= hung,
        )
    return health, calls


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--checks", type=int, default=50)
    parser.add_argument("--hung", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="probe interval (s)")
    parser.add_argument("--timeout", type=float, default=0.5, help="probe timeout (s)")
    parser.add_argument("--pause", type=float, default=0.01, help="between requests (s)")
    args = parser.parse_args()
    # the registry's state-change events go to stderr, the results alone to stdout
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

    health, calls = build(args.checks, args.hung, args.interval, args.timeout)
    app = Starlette(routes=[Mount("/health", app=health.asgi())])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, ws="none"))
    serving = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    serving.start()
    while not server.started:
        time.sleep(0.01)

    threads_before = threading.active_count()
    health.start()
    latencies: list[float] = []
    samples: list[tuple[float, int]] = []
    statuses: dict[int, int] = {}
    started = time.monotonic()
    end = started + args.minutes * 60.0
    next_sample = started
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
        while (now := time.monotonic()) < end:
            if now >= next_sample:
                samples.append((now - started, threading.active_count()))
                next_sample += 1.0
            t0 = time.perf_counter()
            answer = client.get("/health/")
            latencies.append(time.perf_counter() - t0)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            time.sleep(args.pause)
        final = client.get("/health/").json()
    threads_end = threading.active_count()
    health.stop()
    server.should_exit = True
    serving.join(10)
    sock.close()

    latencies.sort()
    by_status: dict[str, int] = {}
    for check in final["checks"]:
        by_status[check["status"]] = by_status.get(check["status"], 0) + 1
    peak = max(n for _, n in samples)
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "method": {
            "minutes": args.minutes,
            "checks": args.checks,
            "hung_forever": args.hung,
            "interval_s": args.interval,
            "timeout_s": args.timeout,
            "server": "uvicorn (h11) + Starlette Mount('/health'), httpx keep-alive client",
        },
        "requests": len(latencies),
        "http_status_counts": statuses,
        "latency_ms": {
            "median": round(statistics.median(latencies) * 1000, 3),
            "p99": round(percentile(latencies, 99) * 1000, 3),
            "max": round(latencies[-1] * 1000, 3),
        },
        "threads": {
            "before_probing": threads_before,
            "peak_while_probing": peak,
            "at_end": threads_end,
            "probing_overhead_peak": peak - threads_before,
            # hung probes pin one thread each; probe_threads (8) work; scheduler + event loop
            "design_bound_for_probing": args.hung + 8 + 2,
            "checks": args.checks,
        },
        "probe_calls": calls,
        "final_report": {"status": final["status"], "score": final["score"], "checks": by_status},
        "threads_over_time": samples[:: max(1, len(samples) // 10)],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
