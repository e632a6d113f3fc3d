"""Steady state: ``@monitored`` against the hand-written OpenTelemetry equivalent over
≥ 200,000 consecutive calls per variant, with the metric reader's *default* interval (60 s).

Short benchmark rounds never see what a service at a sustained rate sees: more records
between two collections than any queue holds, exporter and reader threads working all along.
Here each variant runs in its own process on the same pipeline (the host's SDK providers: a
``BatchSpanProcessor`` to an exporter that discards, a ``PeriodicExportingMetricReader`` at its
default interval to one that discards), and a coordinator interleaves blocks of calls across
the processes in a new shuffled order every round, so all see the same machine load.

Measured per variant:

- **whole-process CPU per call**: ``time.process_time_ns`` (every thread of the process: the
  caller, the span exporter, the metric reader, modelwatch's drain) from the end of warm-up to
  after a final flush of both providers, divided by the calls: background work done between
  blocks is counted, to whom it belongs;
- the **calling thread's CPU** and the **wall time** per call, medians over blocks.

Overhead is the variant minus the bare call (same measure), and the ratios are
``@monitored`` ÷ hand-written. The model call records what an integration records through the
lifecycle API (request settings, token usage, response id, finish reasons, response model); the
hand-written code sets the same span attributes and metric attributes ``@monitored`` emits (read
from a probe call), records the duration and both token histograms and adds the cost counter.

    .venv/bin/python benchmarks/bench_steady.py [--quick | --full] [--calls N] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import machine_description, median, quantile  # noqa: E402
from bench_overhead import COST_USD, DURATION_BUCKETS, MODEL, PROMPT, generate  # noqa: E402

VARIANTS = ("bare", "handwritten", "monitored")
BLOCK = 2_000
MODES = {"quick": 20, "default": 100, "full": 200}  # rounds: calls per variant = rounds * BLOCK


# ------------------------------------------------------------------------- in the workers
def _pipeline() -> tuple[Any, Any]:
    from _common import discard_exporters
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    spans, metrics_exporter = discard_exporters()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    meter_provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(metrics_exporter)]  # default interval
    )
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


#: ``--minimal``: the call records nothing beyond what the decoration declares (no usage,
#: request or response details), as in the short benchmark
MINIMAL = os.environ.get("MODELWATCH_BENCH_MINIMAL") == "1"
REQUEST = {"temperature": 0.2, "max_tokens": 64, "top_p": 0.9, "seed": 7}
USAGE = (12, 34)


def _model_call(prompt: str) -> str:
    """The model call as an integration sees it: request settings, usage and response details
    recorded through the lifecycle API (what the huggingface/openai integrations do)."""
    import modelwatch

    call = modelwatch.current_call()
    if call is not None and not MINIMAL:
        call.set_request(**REQUEST)
        call.record_usage(input_tokens=USAGE[0], output_tokens=USAGE[1])
        call.set_response(response_id="resp-1", finish_reasons=["stop"], model=MODEL)
    return prompt


def _what_monitored_emits() -> dict[str, Any]:
    """Span name, kind and attributes, and the metric attributes, of one monitored call."""
    from modelwatch.testing import capture

    with capture() as cap:
        _monitored(generate)(PROMPT)
        (span,) = cap.spans
        (duration,) = cap.metric_points("gen_ai.client.operation.duration")
        tokens = {
            p.attributes["gen_ai.token.type"]: dict(p.attributes)
            for p in cap.metric_points("gen_ai.client.token.usage")
        }
    attributes = dict(span.attributes or {})
    attributes.pop("modelwatch.cost", None)
    start = {k: v for k, v in attributes.items() if k.startswith("gen_ai.request.")}
    start.update({k: attributes[k] for k in ("gen_ai.operation.name", "gen_ai.provider.name")})
    start.update({k: v for k, v in attributes.items() if k.startswith("modelwatch.analysis")})
    return {
        "name": span.name,
        "kind": span.kind,
        "start": start,
        "end": {k: v for k, v in attributes.items() if k not in start},
        "duration": dict(duration.attributes),
        "tokens": tokens,
    }


def _monitored(fn: Callable[..., Any]) -> Callable[..., Any]:
    import modelwatch

    return modelwatch.monitored(  # type: ignore[no-any-return]
        model=MODEL, provider="huggingface", operation="chat", analysis="code_review"
    )(_model_call)


def _handwritten(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The same span (name, kind, every attribute), duration and token histograms and cost
    counter, written by hand with the OpenTelemetry API."""
    from opentelemetry import metrics, trace

    emits = _what_monitored_emits()
    name, kind, start, end = emits["name"], emits["kind"], emits["start"], emits["end"]
    duration_attrs, tokens = emits["duration"], emits["tokens"]
    input_attrs, output_attrs = tokens.get("input"), tokens.get("output")
    tracer = trace.get_tracer("bench.handwritten")
    meter = metrics.get_meter("bench.handwritten")
    duration = meter.create_histogram(
        "bench.duration", unit="s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
    )
    token_usage = meter.create_histogram("bench.tokens", unit="{token}")
    cost = meter.create_counter("bench.cost", unit="{USD}")
    perf_counter = time.perf_counter

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        begin = perf_counter()
        with tracer.start_as_current_span(name, kind=kind, attributes=start) as span:
            result = fn(*args, **kwargs)
            span.set_attributes(end)
            span.set_attribute("modelwatch.cost", COST_USD)
        duration.record(perf_counter() - begin, duration_attrs)
        if input_attrs is not None:
            token_usage.record(USAGE[0], input_attrs)
            token_usage.record(USAGE[1], output_attrs)
        cost.add(COST_USD, duration_attrs)
        return result

    return wrapper


def worker(variant: str, warmup: int) -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import _common

    _common.install_offline_guard()
    tracer_provider, meter_provider = _pipeline()
    fn = {"bare": lambda f: f, "handwritten": _handwritten, "monitored": _monitored}[variant](
        generate
    )

    def send(obj: Any) -> None:
        proto.write(json.dumps(obj) + "\n")

    def block(n: int) -> dict[str, int]:
        arg = PROMPT
        wall, cpu, proc = time.perf_counter_ns, time.thread_time_ns, time.process_time_ns
        w0, c0, p0 = wall(), cpu(), proc()
        for _ in range(n):
            fn(arg)
        return {"wall": wall() - w0, "cpu": cpu() - c0, "proc": proc() - p0}

    block(warmup)
    gc.collect()
    start_proc = time.process_time_ns()
    calls = 0
    send({"ready": True})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "block":
            result = block(cmd["n"])
            calls += cmd["n"]
            queue = _queue_length()
            send({**result, "queue": queue})
        elif cmd["cmd"] == "finish":
            tracer_provider.force_flush()
            meter_provider.force_flush()
            total = time.process_time_ns() - start_proc
            send({"proc_total": total, "calls": calls})
            proto.close()
            os._exit(0)


def _queue_length() -> int:
    try:
        from modelwatch.capture import _telemetry

        current = _telemetry._current
        return len(current._deferred) if current is not None else 0
    except Exception:
        return -1


# ------------------------------------------------------------------------- coordinator
class Worker:
    def __init__(self, variant: str, warmup: int) -> None:
        self.variant = variant
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", variant, str(warmup)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(HERE),
            env=dict(os.environ, PYTHONHASHSEED="0"),
        )

    def ask(self, obj: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.variant} exited ({self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def ready(self) -> None:
        assert self.proc.stdout is not None
        json.loads(self.proc.stdout.readline())


def run(rounds: int) -> dict[str, Any]:
    workers = {v: Worker(v, warmup=5_000) for v in VARIANTS}
    for w in workers.values():
        w.ready()
    rng = random.Random(13)
    blocks: dict[str, list[dict[str, int]]] = {v: [] for v in VARIANTS}
    started = time.monotonic()
    load = [os.getloadavg()[0]]
    for _ in range(rounds):
        order = list(VARIANTS)
        rng.shuffle(order)
        for v in order:
            blocks[v].append(workers[v].ask({"cmd": "block", "n": BLOCK}))
        load.append(os.getloadavg()[0])
    finals = {v: w.ask({"cmd": "finish"}) for v, w in workers.items()}
    return {
        "rounds": rounds,
        "minimal": os.environ.get("MODELWATCH_BENCH_MINIMAL") == "1",
        "block": BLOCK,
        "seconds": time.monotonic() - started,
        "load": [min(load), max(load)],
        "blocks": blocks,
        "finals": finals,
        "machine": machine_description(),
    }


def analyse(results: dict[str, Any]) -> dict[str, Any]:
    blocks, finals, n = results["blocks"], results["finals"], results["block"]
    out: dict[str, Any] = {}
    for measure in ("wall", "cpu", "proc"):
        per = {v: [b[measure] / n for b in blocks[v]] for v in VARIANTS}
        over = {v: [x - y for x, y in zip(per[v], per["bare"], strict=True)] for v in VARIANTS}
        ratios = [m / h for m, h in zip(over["monitored"], over["handwritten"], strict=True) if h]
        out[measure] = {
            "ns_per_call": {v: median(per[v]) for v in VARIANTS},
            "overhead_ns": {v: median(over[v]) for v in VARIANTS},
            "ratio": [quantile(ratios, 0.25), median(ratios), quantile(ratios, 0.75)],
        }
    whole = {v: finals[v]["proc_total"] / finals[v]["calls"] for v in VARIANTS}
    over_whole = {v: whole[v] - whole["bare"] for v in VARIANTS}
    out["whole_process"] = {
        "ns_per_call": whole,
        "overhead_ns": over_whole,
        "ratio": over_whole["monitored"] / over_whole["handwritten"],
    }
    out["max_queue"] = max(b["queue"] for b in blocks["monitored"])
    return out


def render(results: dict[str, Any], analysis: dict[str, Any]) -> str:
    calls = results["rounds"] * results["block"]
    lines = [
        f"steady state: {calls:,} calls per variant in {results['rounds']} interleaved rounds of "
        f"{results['block']:,}; {results['seconds']:.0f} s; "
        f"{'minimal' if results['minimal'] else 'usage, request and response details'}; "
        "load average "
        f"{results['load'][0]:.1f}-{results['load'][1]:.1f}; reader interval: SDK default (60 s)",
        "",
        "| measure | bare µs | hand-written overhead µs | @monitored overhead µs | "
        "@monitored ÷ hand-written |",
        "|---|---:|---:|---:|---:|",
    ]

    def row(label: str, a: dict[str, Any], ratio: str) -> str:
        bare, over = a["ns_per_call"]["bare"] / 1e3, a["overhead_ns"]
        hand, mon = over["handwritten"] / 1e3, over["monitored"] / 1e3
        return f"| {label} | {bare:.2f} | {hand:.2f} | {mon:.2f} | {ratio} |"

    whole = analysis["whole_process"]
    lines.append(
        row("whole-process CPU (all threads, incl. final flush)", whole, f"{whole['ratio']:.2f}")
    )
    names = {"proc": "process CPU during blocks", "cpu": "calling-thread CPU", "wall": "wall"}
    for measure in ("proc", "cpu", "wall"):
        lo, mid, hi = analysis[measure]["ratio"]
        label = f"{names[measure]} (median of blocks)"
        lines.append(row(label, analysis[measure], f"{mid:.2f} ({lo:.2f}-{hi:.2f})"))
    lines.append("")
    lines.append(f"largest deferred queue seen after a block: {analysis['max_queue']:,} records")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1], int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    parser.add_argument("--rounds", type=int, help=f"rounds of {BLOCK:,} calls per variant")
    parser.add_argument("--json", type=Path, help="write raw results and analysis here")
    parser.add_argument(
        "--minimal", action="store_true", help="no usage, request or response details"
    )
    args = parser.parse_args(argv)
    if args.minimal:
        os.environ["MODELWATCH_BENCH_MINIMAL"] = "1"  # the workers inherit it
    rounds = args.rounds or MODES["quick" if args.quick else "full" if args.full else "default"]
    results = run(rounds)
    analysis = analyse(results)
    print(render(results, analysis))
    out = args.json or HERE / "results" / "steady.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"results": results, "analysis": analysis}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
