"""Where the time of one ``@monitored`` call goes: the SDK floor against modelwatch's own steps.

One process, the ``discard`` pipeline of ``bench_overhead.py`` (host SDK providers, batch span
processor and periodic metric reader to exporters that discard). Every piece below is timed on
the calling thread's CPU clock (``thread_time_ns``, which other processes' load disturbs far
less than the wall clock), in chunks interleaved in a shuffled order, over many rounds; the
table gives the median per-call cost minus an empty call's, and the p25-p75 spread.

SDK floor (what any instrumentation with one span and two metrics must pay):
``start_span`` + attach/detach + ``end``; the same through ``start_as_current_span``;
one ``Histogram.record``; one ``Counter.add``.

modelwatch's own steps (private internals: a piece is reported n/a if they were renamed):
``Call()``, ``guard()`` as used around usage extraction, ``extract_usage`` on a str, the cost
lookup, ``_cost_attributes``, the end lock, the in-flight registry, ``telemetry()``.

Run: ``.venv/bin/python benchmarks/bench_hotpath.py [--quick|--full] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_overhead as bo  # noqa: E402
from _common import machine_description, median, quantile  # noqa: E402

MODES = {"quick": (500, 12), "default": (1000, 30), "full": (2000, 60)}


def pieces() -> dict[str, Callable[[str], Any]]:
    bo._discard_pipeline()
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind

    import modelwatch

    tracer = trace.get_tracer("bench.hotpath")
    meter = metrics.get_meter("bench.hotpath")
    histogram = meter.create_histogram(
        "bench.hotpath.duration", unit="s", explicit_bucket_boundaries_advisory=bo.DURATION_BUCKETS
    )
    counter = meter.create_counter("bench.hotpath.cost", unit="{USD}")
    attrs = bo.METRIC_ATTRIBUTES

    def lean_span(x: str) -> Any:
        span = tracer.start_span(bo.SPAN_NAME, kind=SpanKind.CLIENT, attributes=bo.SPAN_ATTRIBUTES)
        token = otel_context.attach(trace.set_span_in_context(span))
        result = bo.generate(x)
        otel_context.detach(token)
        span.set_attribute("modelwatch.cost", bo.COST_USD)
        span.end()
        return result

    def span_cm(x: str) -> Any:
        with tracer.start_as_current_span(
            bo.SPAN_NAME, kind=SpanKind.CLIENT, attributes=bo.SPAN_ATTRIBUTES
        ) as span:
            result = bo.generate(x)
            span.set_attribute("modelwatch.cost", bo.COST_USD)
        return result

    out: dict[str, Callable[[str], Any]] = {
        "empty call": lambda x: None,
        "hand-written OTel (span via start_as_current_span + histogram + counter)": bo.handwritten(
            bo.generate
        ),
        "@monitored": bo.monitored(bo.generate),
        "SDK: start_span + attach/detach + set_attribute + end": lean_span,
        "SDK: the same via start_as_current_span": span_cm,
        "SDK: Histogram.record (4 attributes)": lambda x: histogram.record(0.001, attrs),
        "SDK: Counter.add (4 attributes)": lambda x: counter.add(bo.COST_USD, attrs),
    }
    try:
        from modelwatch._safety import guard
        from modelwatch.capture import call as C  # noqa: N812
        from modelwatch.capture._telemetry import telemetry
        from modelwatch.capture.cost import cost_of
        from modelwatch.capture.usage import extract_usage

        mon = modelwatch.monitored(
            model=bo.MODEL, provider=bo.PROVIDER, operation=bo.OPERATION, analysis=bo.ANALYSIS
        )
        spec = mon._spec  # type: ignore[attr-defined]

        def guarded(x: str) -> None:
            with guard("usage"):
                pass

        def end_lock(x: str) -> None:
            with C._end_lock:
                pass

        def inflight(x: str) -> None:
            key = id(x)
            C._inflight[key] = x  # type: ignore[assignment]
            C._seen_inflight_keys.add(spec.inflight_key)
            C._inflight.pop(key, None)

        def ctxvar(x: str) -> None:
            C._CURRENT.reset(C._CURRENT.set(None))

        def start_end(x: str) -> Any:
            call = C.start_call(spec)
            result = bo.generate(x)
            call._detach()
            call._end()
            return result

        candidates: dict[str, Callable[[str], Any]] = {
            "modelwatch: start_call + _detach + _end (no usage step, no wrapt)": start_end,
            "modelwatch: Call(spec)": lambda x: C.Call(spec),
            "modelwatch: guard() context manager, empty body (for reference)": guarded,
            "modelwatch: extract_usage(str)": extract_usage,
            "modelwatch: cost_of(model)": lambda x: cost_of(bo.MODEL, None, None),
            "modelwatch: _cost_attributes(spec) (a new dict per call)": lambda x: (
                C._cost_attributes(spec)  # type: ignore[attr-defined]
            ),
            "modelwatch: Telemetry.add_cost (observable cost counter)": lambda x: (
                telemetry().add_cost(spec.cost_key, bo.COST_USD)  # type: ignore[attr-defined]
            ),
            "modelwatch: _end_lock acquire/release": end_lock,
            "modelwatch: in-flight registry add/pop + seen-keys add": inflight,
            "modelwatch: _CURRENT set/reset": ctxvar,
            "modelwatch: telemetry()": lambda x: telemetry(),
        }
        for name, fn in candidates.items():
            try:  # internals come and go: measure the ones that exist
                fn("x")
            except Exception as exc:
                print(f"(skipped {name}: {type(exc).__name__}: {exc})", file=sys.stderr)
                continue
            out[name] = fn
    except (ImportError, AttributeError) as exc:
        print(f"(modelwatch internals changed, pieces skipped: {exc})", file=sys.stderr)
    return out


def run(mode: str) -> dict[str, Any]:
    chunk, rounds = MODES[mode]
    cases = pieces()
    names = list(cases)
    rng = random.Random(7)
    samples: dict[str, list[float]] = {name: [] for name in names}
    clock = time.thread_time_ns
    for name in names:  # warm-up
        for _ in range(chunk):
            cases[name]("x")
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            fn = cases[name]
            start = clock()
            for _ in itertools.repeat(None, chunk):
                fn("x")
            samples[name].append((clock() - start) / chunk)
    base = median(samples["empty call"])
    rows = {
        name: {
            "median_ns": median(values) - base,
            "p25_ns": quantile(values, 0.25) - base,
            "p75_ns": quantile(values, 0.75) - base,
        }
        for name, values in samples.items()
        if name != "empty call"
    }
    return {
        "mode": mode,
        "chunk": chunk,
        "rounds": rounds,
        "machine": machine_description(),
        "rows": rows,
    }


def render(results: dict[str, Any]) -> str:
    out = [
        f"modelwatch {results['machine'].get('modelwatch_commit')}. "
        f"Calling-thread CPU per call, {results['rounds']} interleaved rounds of "
        f"{results['chunk']} calls (median minus an empty call's; p25-p75).",
        "",
        "| piece | µs per call | p25-p75 |",
        "|---|---:|---:|",
    ]
    for name, row in results["rows"].items():
        out.append(
            f"| {name} | {row['median_ns'] / 1000:.2f} | "
            f"{row['p25_ns'] / 1000:.2f}-{row['p75_ns'] / 1000:.2f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    results = run("quick" if args.quick else "full" if args.full else "default")
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
