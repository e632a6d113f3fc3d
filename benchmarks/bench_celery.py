"""Per-task overhead of ``modelwatch.celery.instrument(app)`` against an uninstrumented task.

Method (one process, interleaved rounds, 127.0.0.1 only):

- Telemetry goes through the real pipeline: ``modelwatch.configure(otlp_endpoint=<local sink>)``
  (BatchSpanProcessor and PeriodicExportingMetricReader exporting OTLP/HTTP to a sink on
  127.0.0.1 that answers 200), so span creation, context propagation and metric aggregation are
  all paid as in production.
- Two identical Celery apps on the in-memory broker: one instrumented, one not. Celery's signals
  are process-wide, but the handlers return at once for tasks of apps that are not instrumented,
  and the producer side is timed with instrumentation off for the bare app, so the bare
  figures are truly bare.
- Worker side: ``task.apply(headers=...)`` runs the same ``trace_task`` path a worker runs
  (``task_prerun``/``task_postrun`` signals, state, result handling), with the headers a
  published message carries (``traceparent`` and the publication time), so the consumer span,
  its parent extraction and the queue-wait metric are all exercised.
- Producer side: ``task.apply_async()`` publishing to the in-memory broker (``before``/
  ``after_task_publish``: the producer span and header injection).
- Each batch ends with a flush of the spans it made, inside the timing: the export work (protobuf
  encoding, the POST, their GIL time) is charged to the variant that caused it.
- Each round times a batch of every variant in a shuffled order; an overhead is the difference
  of medians over rounds, so drift from other load lands on both sides.
- Headline: (producer overhead + worker overhead) as a share of a 10 ms task, and a direct
  check with a task that sleeps 10 ms, instrumented against bare.

Run: ``.venv/bin/python benchmarks/bench_celery.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    OtlpSink,
    install_offline_guard,
    machine_description,
    median,
)

TASK_S = 0.010


def build_app(name: str) -> Any:
    from celery import Celery

    app = Celery(name, broker="memory://", backend="cache+memory://")
    app.conf.update(task_store_eager_result=False, task_ignore_result=True)

    @app.task(name=f"{name}.noop", shared=False)
    def noop() -> None:
        return None

    @app.task(name=f"{name}.ten_ms", shared=False)
    def ten_ms() -> None:
        time.sleep(TASK_S)

    return app


def timed_batch(fn: Callable[[], Any], n: int, settle: Callable[[], Any] | None = None) -> float:
    """Seconds per call over ``n`` calls, ``settle()`` (if given) included in the time."""
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        if settle is not None:
            settle()
        return (time.perf_counter() - start) / n
    finally:
        if gc_was:
            gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for a smoke run)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    rounds, n_fast, n_slow = (5, 200, 10) if args.quick else (31, 1000, 40)

    install_offline_guard()
    sink = OtlpSink()

    import modelwatch
    import modelwatch.celery
    from modelwatch.integrations import celery as mw_celery

    modelwatch.configure(service_name="bench-celery", otlp_endpoint=sink.endpoint)
    bare_app = build_app("bare")
    inst_app = build_app("inst")
    modelwatch.celery.instrument(inst_app)

    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    def headers() -> dict[str, Any]:
        return {"traceparent": traceparent, mw_celery.HEADER_PUBLISHED_AT: time.time()}

    bare_noop, inst_noop = bare_app.tasks["bare.noop"], inst_app.tasks["inst.noop"]
    bare_10, inst_10 = bare_app.tasks["bare.ten_ms"], inst_app.tasks["inst.ten_ms"]

    def publish_bare() -> None:
        # the producer handlers are process-wide: switch them off for the bare publication
        saved = list(mw_celery._apps)
        mw_celery._apps.clear()
        try:
            bare_noop.apply_async()
        finally:
            mw_celery._apps.extend(saved)

    def publish_inst() -> None:
        saved = list(mw_celery._apps)
        mw_celery._apps.clear()
        mw_celery._apps.extend(saved)  # same list juggling as the bare variant, then publish
        inst_noop.apply_async()

    variants: dict[str, tuple[Callable[[], Any], int]] = {
        "worker bare": (lambda: bare_noop.apply(headers=headers()), n_fast),
        "worker instrumented": (lambda: inst_noop.apply(headers=headers()), n_fast),
        "producer bare": (publish_bare, n_fast),
        "producer instrumented": (publish_inst, n_fast),
        "10 ms task bare": (lambda: bare_10.apply(headers=headers()), n_slow),
        "10 ms task instrumented": (lambda: inst_10.apply(headers=headers()), n_slow),
    }
    from opentelemetry import trace

    provider: Any = trace.get_tracer_provider()

    def export_spans() -> None:
        # every batch exports the spans it made before its clock stops, so the protobuf
        # encoding and the POST (and their GIL time) are charged to the variant that caused
        # them instead of spilling into whichever batch runs next
        provider.force_flush(5000)

    for fn, _ in variants.values():  # warm up
        for _ in range(50):
            fn()

    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            fn, n = variants[name]
            samples[name].append(timed_batch(fn, n, settle=export_spans))
        # drain the in-memory queues so publishing cost does not grow with queue length
        for app in (bare_app, inst_app):
            with app.connection_for_write() as conn:
                conn.default_channel.queue_purge("celery")

    med = {name: median(values) for name, values in samples.items()}
    best = {name: min(values) for name, values in samples.items()}
    best_total_us = (
        best["worker instrumented"]
        - best["worker bare"]
        + best["producer instrumented"]
        - best["producer bare"]
    ) * 1e6
    worker_us = (med["worker instrumented"] - med["worker bare"]) * 1e6
    producer_us = (med["producer instrumented"] - med["producer bare"]) * 1e6
    total_us = worker_us + producer_us
    # paired per round (same moment, same load), then the median over rounds
    direct_pct = median(
        [
            (inst / bare - 1) * 100
            for inst, bare in zip(
                samples["10 ms task instrumented"], samples["10 ms task bare"], strict=True
            )
        ]
    )
    results = {
        "machine": machine_description(),
        "rounds": rounds,
        "calls_per_batch": {"fast": n_fast, "10ms": n_slow},
        "median_per_task_us": {name: round(v * 1e6, 2) for name, v in med.items()},
        "overhead_us": {
            "worker": round(worker_us, 2),
            "producer": round(producer_us, 2),
            "total": round(total_us, 2),
        },
        "overhead_pct_of_10ms_task": round(total_us / (TASK_S * 1e6) * 100, 3),
        "best_round_overhead_us": round(best_total_us, 2),
        "direct_10ms_task_pct": round(direct_pct, 3),
        "otlp_requests": dict(sink.requests),
    }
    modelwatch.celery.uninstrument(inst_app)
    modelwatch.flush(5.0)
    results["otlp_requests"] = dict(sink.requests)
    modelwatch.shutdown()
    bare_app.close()
    inst_app.close()
    sink.close()

    machine = results["machine"]
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, load {machine['load_avg']}, "
        f"Python {machine['python']}"
    )
    print(f"rounds: {rounds}, batch: {n_fast} fast / {n_slow} 10 ms calls\n")
    print(f"{'variant':<26}{'median per task':>18}")
    for name, value in med.items():
        print(f"{name:<26}{value * 1e6:>15.2f} us")
    print()
    print(f"worker-side overhead   {worker_us:8.2f} us")
    print(f"producer-side overhead {producer_us:8.2f} us")
    print(
        f"total per task         {total_us:8.2f} us = "
        f"{results['overhead_pct_of_10ms_task']:.2f} % of a 10 ms task (target < 5 %)"
    )
    print(
        f"best rounds (least disturbed by other load): {best_total_us:.2f} us = "
        f"{best_total_us / (TASK_S * 1e6) * 100:.2f} %"
    )
    print(f"direct 10 ms task check (worker side, median of paired rounds): {direct_pct:+.2f} %")
    print(f"OTLP requests received by the sink: {results['otlp_requests']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
