"""Router benchmarks, run side by side in one process: ``python benchmarks/bench_router.py``.

Every scenario calls the same trivial backend (so what is measured is modelwatch, not a
model) with the OpenTelemetry SDK installed the way a service would have it: a tracer
provider with a batch span processor (exporting to nowhere) and a meter provider with a
reader. Scenarios run in ``ROUNDS`` interleaved rounds of ``BATCH`` calls each (every
scenario once per round, so background load hits them alike); the table shows the median
per-call time, and overheads are that minus the bare function call.

Scenarios:

* ``plain``                - the bare backend function
* ``monitored``            - ``@modelwatch.monitored`` around it (the reference overhead)
* ``route span + monitored`` - a monitored call inside a bare SDK span: the floor for any
  router that emits a route span
* ``router (pool)``        - ``Router.call`` happy path, default: sync attempts on the pool
* ``router (inline)``      - ``Router(isolate_sync=False)``: attempts on the caller's thread
* ``router acall``         - ``await Router.acall`` with an ``async def`` backend, against
  ``await`` of a monitored ``async def``
* ``failover, open``       - primary's breaker open, backup answers (vs. backup alone)
* ``failover, refused``    - primary refuses TCP connections (one failed attempt, no sleep)
* ``pybreaker+tenacity``   - what a user would write instead: monitored backends, a pybreaker
  breaker each, a tenacity retry, a fallback ``except``
* ``recovery``             - time from the primary healing to traffic returning to it, with
  default settings (probe every 5 s) and no user traffic

``python benchmarks/bench_router.py happy`` times only the happy path, in steady state:
``STEADY_ROUNDS`` interleaved rounds of ``STEADY_BATCH`` calls (>= 200,000 calls per scenario).
``python benchmarks/bench_router.py hang`` times a user's answer while the primary hangs
(``HANG_CALLS`` calls in a row): breaker only, and with hedging (median and p99).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import random
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pybreaker
import tenacity
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

import modelwatch
from modelwatch import semconv
from modelwatch.capture._telemetry import telemetry, use_providers
from modelwatch.resilience import Backend, BreakerPolicy, Router
from modelwatch.resilience.deadline import WorkerPool, await_within

BATCH = 300
ROUNDS = 31
STEADY_BATCH = 500
STEADY_ROUNDS = 410
HANG_CALLS = 500
HANG_PACE_S = 0.05  # 20 calls/s, so the run spans the breaker's half-open trials (25 s)
HANG_ATTEMPT_TIMEOUT_S = 1.0
HANG_HEDGE_S = 0.05


class DropExporter(SpanExporter):
    """Exports nowhere: the batch processor's cost stays in, the network stays out."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def backend(text: str) -> str:
    return text


async def abackend(text: str) -> str:
    return text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refusing_backend(port: int) -> Callable[[str], str]:
    def call(text: str) -> str:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        return text

    return call


def us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} µs"


def main() -> None:
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=100_000))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    rows: list[tuple[str, str, str]] = []
    with use_providers(tp, mp):
        results = run_all()
    tp.shutdown()
    mp.shutdown()
    plain = results["plain"]
    mon = results["monitored"] - plain
    aplain = results["async plain"]
    amon = results["async monitored"] - aplain

    def ratio(name: str, base: float, ref: float) -> str:
        return f"{(results[name] - base) / ref:5.2f} x monitored"

    rows = [
        ("plain call", us(plain), ""),
        ("monitored call", us(results["monitored"]), f"overhead {us(mon)}"),
        (
            "monitored inside a bare route span",
            us(results["route span + monitored"]),
            ratio("route span + monitored", plain, mon) + "  (the floor)",
        ),
        (
            "router.call (pool, default)",
            us(results["router pool"]),
            ratio("router pool", plain, mon),
        ),
        (
            "router.call (isolate_sync=False)",
            us(results["router inline"]),
            ratio("router inline", plain, mon),
        ),
        ("await plain async", us(aplain), ""),
        ("await monitored async", us(results["async monitored"]), f"overhead {us(amon)}"),
        ("await router.acall", us(results["router acall"]), ratio("router acall", aplain, amon)),
        ("router, backup only (inline)", us(results["backup only"]), ""),
        (
            "failover, primary breaker open",
            us(results["failover open"]),
            f"extra {us(results['failover open'] - results['backup only'])}",
        ),
        ("refused connect alone", us(results["refused alone"]), ""),
        (
            "failover, primary refuses",
            us(results["failover refused"]),
            "extra over refused+backup "
            + us(results["failover refused"] - results["refused alone"] - results["backup only"]),
        ),
        ("pybreaker+tenacity, happy", us(results["user happy"]), ratio("user happy", plain, mon)),
        (
            "pybreaker+tenacity, primary open",
            us(results["user open"]),
            f"extra {us(results['user open'] - results['user backup only'])}",
        ),
        ("recovery, no traffic (defaults)", f"{results['recovery']:8.2f} s", "target < 10 s"),
    ]
    print(
        f"# modelwatch router benchmark  (python {platform.python_version()}, "
        f"{platform.machine()}, {platform.system()}; "
        f"{ROUNDS} interleaved rounds of {BATCH} calls, medians)"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")


def inside_a_route_span(mon: Callable[[str], Any], router: str) -> Callable[[], None]:
    """``mon("x")`` inside a bare SDK ``route`` span, as a router with two spans per call
    would run it (nothing of modelwatch's router around it)."""
    tracer = telemetry().tracer
    attributes = {semconv.MODELWATCH_ROUTER: router}

    def call() -> None:
        span = tracer.start_span(f"route {router}", kind=SpanKind.INTERNAL, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            mon("x")
        finally:
            otel_context.detach(token)
            span.end()

    return call


def run_all() -> dict[str, float]:
    """Build every scenario, then time them interleaved (see :func:`interleaved`)."""
    sync: dict[str, Callable[[], Any]] = {}
    sync["plain"] = lambda: backend("x")
    mon = modelwatch.monitored(model="bench/model", provider="bench")(backend)
    sync["monitored"] = lambda: mon("x")
    # the floor of a router that emits a route span: a monitored call inside a bare SDK span
    sync["route span + monitored"] = inside_a_route_span(mon, "bench")
    pooled = Router("bench-pool", [Backend(backend, model="bench/model", provider="bench")])
    sync["router pool"] = lambda: pooled.call("x")
    inline = Router(
        "bench-inline",
        [Backend(backend, model="bench/model", provider="bench")],
        isolate_sync=False,
    )
    sync["router inline"] = lambda: inline.call("x")

    # failover: primary breaker open (inline, to isolate modelwatch's own cost)
    backup_only = Router(
        "bench-backup",
        [Backend(backend, model="bench/backup", provider="bench")],
        isolate_sync=False,
    )
    sync["backup only"] = lambda: backup_only.call("x")
    failover = Router(
        "bench-failover",
        [
            Backend(backend, model="bench/primary", provider="bench"),
            Backend(backend, model="bench/backup", provider="bench"),
        ],
        breaker=BreakerPolicy(open_s=3600.0, max_open_s=3600.0),
        isolate_sync=False,
    )
    failover.breaker("bench/primary").force_open()
    sync["failover open"] = lambda: failover.call("x")

    # primary refuses TCP connections; its breaker never opens here, so every call pays
    # exactly one failed attempt
    refuse = refusing_backend(closed_port())

    def refused_alone() -> None:
        with contextlib.suppress(ConnectionRefusedError):
            refuse("x")

    sync["refused alone"] = refused_alone
    refusing = Router(
        "bench-refused",
        [
            Backend(refuse, model="bench/primary", provider="bench"),
            Backend(backend, model="bench/backup", provider="bench"),
        ],
        breaker=BreakerPolicy(consecutive_failures=10**9, min_calls=10**9),
        isolate_sync=False,
    )
    sync["failover refused"] = lambda: refusing.call("x")

    # what a user would write instead
    mon_primary = modelwatch.monitored(model="bench/primary", provider="bench")(backend)
    mon_backup = modelwatch.monitored(model="bench/backup", provider="bench")(backend)
    cb_primary = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=3600)
    cb_open = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=3600)
    cb_open.open()
    cb_backup = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=3600)

    def user_router(primary_breaker: pybreaker.CircuitBreaker) -> Callable[[str], str]:
        @tenacity.retry(
            stop=tenacity.stop_after_attempt(2),
            retry=tenacity.retry_if_exception_type(ConnectionError),
            wait=tenacity.wait_none(),
            reraise=True,
        )
        def call(text: str) -> str:
            try:
                return primary_breaker.call(mon_primary, text)
            except (pybreaker.CircuitBreakerError, ConnectionError):
                return cb_backup.call(mon_backup, text)

        return call

    user_happy, user_open = user_router(cb_primary), user_router(cb_open)

    @tenacity.retry(stop=tenacity.stop_after_attempt(2), wait=tenacity.wait_none(), reraise=True)
    def user_backup_only(text: str) -> str:
        return cb_backup.call(mon_backup, text)

    sync["user happy"] = lambda: user_happy("x")
    sync["user backup only"] = lambda: user_backup_only("x")
    sync["user open"] = lambda: user_open("x")

    results = interleaved(sync)

    amon = modelwatch.monitored(model="bench/model", provider="bench")(abackend)
    arouter = Router("bench-async", [Backend(abackend, model="bench/model", provider="bench")])
    results.update(
        ainterleaved(
            {
                "async plain": lambda: abackend("x"),
                "async monitored": lambda: amon("x"),
                "router acall": lambda: arouter.acall("x"),
            }
        )
    )
    results["recovery"] = recovery_time()
    return results


def interleaved(
    scenarios: dict[str, Callable[[], Any]], samples: dict[str, list[float]] | None = None
) -> dict[str, float]:
    """Median seconds per call of each scenario. Rounds are interleaved (every scenario runs
    once per round, in a new shuffled order), so a noisy neighbour slows all scenarios alike
    instead of skewing one. ``samples`` receives each round's figure per scenario."""
    for fn in scenarios.values():
        for _ in range(BATCH // 4):
            fn()  # warm up
    samples = {} if samples is None else samples
    samples.update({name: [] for name in scenarios})
    rng = random.Random(7)
    for _ in range(ROUNDS):
        order = list(scenarios.items())
        rng.shuffle(order)
        for name, fn in order:
            start = time.perf_counter()
            for _ in range(BATCH):
                fn()
            samples[name].append((time.perf_counter() - start) / BATCH)
    return {name: statistics.median(samples[name]) for name in scenarios}


def ainterleaved(
    scenarios: dict[str, Callable[[], Any]], samples: dict[str, list[float]] | None = None
) -> dict[str, float]:
    """The ``async`` twin of :func:`interleaved` (one event loop for every scenario)."""
    samples = {} if samples is None else samples
    samples.update({name: [] for name in scenarios})

    async def run() -> dict[str, float]:
        for fn in scenarios.values():
            for _ in range(BATCH // 4):
                await fn()
        rng = random.Random(7)
        for _ in range(ROUNDS):
            order = list(scenarios.items())
            rng.shuffle(order)
            for name, fn in order:
                start = time.perf_counter()
                for _ in range(BATCH):
                    await fn()
                samples[name].append((time.perf_counter() - start) / BATCH)
        return {name: statistics.median(samples[name]) for name in scenarios}

    return asyncio.run(run())


def round_ratios(
    samples: dict[str, list[float]], name: str, base: str, ref: str
) -> tuple[float, float, float]:
    """p25, median and p75 of ``(name - base) / (ref - base)`` taken round by round."""
    ratios = sorted(
        (x - b) / (r - b)
        for x, b, r in zip(samples[name], samples[base], samples[ref], strict=True)
        if r > b
    )

    def q(p: float) -> float:
        return ratios[min(len(ratios) - 1, int(p * len(ratios)))]

    return q(0.25), q(0.5), q(0.75)


def recovery_time() -> float:
    """Seconds from the primary healing to the breaker closing, with no user traffic."""
    healthy = threading.Event()
    closed = threading.Event()

    def probe() -> None:
        if not healthy.is_set():
            raise ConnectionRefusedError("down")

    router = Router(
        "bench-recovery",
        [
            Backend(backend, model="bench/primary", provider="bench", probe=probe),
            Backend(backend, model="bench/backup", provider="bench"),
        ],
    )
    breaker = router.breaker("bench/primary")
    breaker.add_listener(lambda _b, t: closed.set() if t.to_state == "closed" else None)
    breaker.force_open()
    time.sleep(2.0)  # the primary heals at some point after it was marked down
    healed = time.monotonic()
    healthy.set()
    if not closed.wait(30.0):
        return float("inf")
    return time.monotonic() - healed


def steady() -> None:
    """The happy path only, >= 200,000 calls per scenario in many short interleaved rounds
    (500 calls: a noisy neighbour's burst hits every scenario alike). Ratios to a monitored
    call: of the per-scenario medians (the headline figure), and round by round (median,
    p25-p75: the spread)."""
    global BATCH, ROUNDS
    BATCH, ROUNDS = STEADY_BATCH, STEADY_ROUNDS
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=100_000))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    samples: dict[str, list[float]] = {}
    started = time.monotonic()
    load = [os.getloadavg()[0]]
    with use_providers(tp, mp):
        mon = modelwatch.monitored(model="bench/model", provider="bench")(backend)
        route_span_and_monitored = inside_a_route_span(mon, "floor")
        pooled = Router("steady-pool", [Backend(backend, model="bench/model", provider="bench")])
        inline = Router(
            "steady-inline",
            [Backend(backend, model="bench/model", provider="bench")],
            isolate_sync=False,
        )
        hop = WorkerPool(4, name="bench-hop")
        results = interleaved(
            {
                "plain": lambda: backend("x"),
                "monitored": lambda: mon("x"),
                "route span + monitored": route_span_and_monitored,
                "router pool": lambda: pooled.call("x"),
                "router inline": lambda: inline.call("x"),
                # what isolate_sync costs by itself: one hand-off to a worker thread and back
                "thread hop alone": lambda: hop.run(backend, ("x",), None, 25.0, "hop"),
            },
            samples,
        )
        hop.close()
        load.append(os.getloadavg()[0])
        amon = modelwatch.monitored(model="bench/model", provider="bench")(abackend)
        arouter = Router("steady-async", [Backend(abackend, model="bench/model", provider="bench")])
        async_samples: dict[str, list[float]] = {}

        async def guarded_by_asyncio_timeout() -> str:
            async with asyncio.timeout(25.0):
                return await abackend("x")

        results.update(
            ainterleaved(
                {
                    "async plain": lambda: abackend("x"),
                    "async monitored": lambda: amon("x"),
                    "router acall": lambda: arouter.acall("x"),
                    # the per-await timeout: asyncio's own, and the router's (one timer per loop)
                    "asyncio.timeout alone": guarded_by_asyncio_timeout,
                    "await_within alone": lambda: await_within(abackend("x"), 25.0, "x"),
                },
                async_samples,
            )
        )
        samples.update(async_samples)
        load.append(os.getloadavg()[0])
    tp.shutdown()
    mp.shutdown()
    print(
        f"# steady state: {ROUNDS} interleaved rounds of {BATCH} calls per scenario "
        f"({ROUNDS * BATCH:,} calls), medians, python {platform.python_version()}, "
        f"{time.monotonic() - started:.0f} s, load average {min(load):.1f}-{max(load):.1f}"
    )
    print(
        "scenario                 per call   x monitored: of the medians | "
        "per round, median (p25-p75)"
    )
    for name, base, ref in (
        ("monitored", "plain", "monitored"),
        ("route span + monitored", "plain", "monitored"),
        ("router pool", "plain", "monitored"),
        ("router inline", "plain", "monitored"),
        ("thread hop alone", "plain", "monitored"),
        ("async monitored", "async plain", "async monitored"),
        ("router acall", "async plain", "async monitored"),
        ("asyncio.timeout alone", "async plain", "async monitored"),
        ("await_within alone", "async plain", "async monitored"),
    ):
        lo, mid, hi = round_ratios(samples, name, base, ref)
        of_medians = (results[name] - results[base]) / (results[ref] - results[base])
        print(
            f"{name:<24} {us(results[name])}  {of_medians:5.2f}"
            f"{'':20}| {mid:5.2f} ({lo:.2f}-{hi:.2f})"
        )


def hang() -> None:
    """A user's time to an answer while the primary hangs: breaker only vs. hedging."""
    release = threading.Event()

    def hung(text: str) -> str:
        release.wait(60)
        return text

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=100_000))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    rows = []
    with use_providers(tp, mp):
        for label, hedge in (
            ("breaker only", None),
            (f"hedge after {HANG_HEDGE_S * 1000:.0f} ms", modelwatch.Hedge(after_s=HANG_HEDGE_S)),
        ):
            router = Router(
                f"hang-{'hedge' if hedge else 'breaker'}",
                [
                    Backend(hung, model="bench/primary", provider="bench"),
                    Backend(backend, model="bench/backup", provider="bench"),
                ],
                attempt_timeout_s=HANG_ATTEMPT_TIMEOUT_S,
                hedge=hedge,
            )
            times = []
            for _ in range(HANG_CALLS):
                start = time.perf_counter()
                router.call("x")
                times.append(time.perf_counter() - start)
                time.sleep(HANG_PACE_S)
            times.sort()
            rows.append(
                (
                    label,
                    statistics.median(times),
                    times[int(0.99 * len(times)) - 1],
                    times[-1],
                    sum(t >= HANG_ATTEMPT_TIMEOUT_S / 2 for t in times),
                    router.status()[0].state,
                )
            )
    release.set()
    tp.shutdown()
    mp.shutdown()
    print(
        f"# time to the user's answer, primary hanging, {HANG_CALLS} calls, one every "
        f"{HANG_PACE_S * 1000:.0f} ms, attempt timeout {HANG_ATTEMPT_TIMEOUT_S} s "
        "(breaker and retry defaults)"
    )
    for label, median, p99, worst, waited, state in rows:
        print(
            f"{label:<20} median {median * 1000:8.2f} ms  p99 {p99 * 1000:8.2f} ms  "
            f"max {worst * 1000:8.2f} ms  calls that waited the attempt timeout: {waited}  "
            f"primary breaker at the end: {state}"
        )


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "all"
    sys.exit({"happy": steady, "hang": hang}.get(mode, main)())
