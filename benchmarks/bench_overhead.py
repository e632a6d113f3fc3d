"""Per-call overhead of ``@modelwatch.monitored``, against a hand-written OTel equivalent and peers.

One run, interleaved. A coordinator starts one worker process per *scenario* (a telemetry
pipeline; OpenTelemetry allows one global pipeline per process) and, round after round, asks the
workers in a shuffled order to time one batch of every variant they hold, themselves in a
shuffled order. Each batch is ``n`` calls of the same trivial function timed with
``time.perf_counter_ns``. A variant's overhead in a round is its per-call time minus the bare
call's in the same worker and round; the tables give medians over rounds and ratios of paired
rounds, so drift from other load on the machine cancels instead of landing on one variant.

Scenarios (pipelines), all talking to 127.0.0.1 only:

- ``discard``: the host installed SDK providers itself: BatchSpanProcessor to an exporter that
  discards, PeriodicExportingMetricReader (10 s) to a metric exporter that discards.
- ``otlp-live``: ``modelwatch.configure(otlp_endpoint=<local sink>)``, the sink answering 200.
- ``otlp-unsampled``: the same with ``sample_ratio=0.0``.
- ``otlp-dead-refused``: ``configure(otlp_endpoint=<closed port>)``.
- ``otlp-dead-hung``: ``configure(otlp_endpoint=<port that accepts and never answers>)``.
- ``traceloop``, ``openlit`` (in the peers' venv): the peer's own ``init`` exporting OTLP to the
  sink; ``@monitored`` and the hand-written equivalent run on the same pipeline in that process.

Variants: ``bare``, ``hand-written OTel`` (one span with the same attributes via
``start_as_current_span``, one histogram record, one counter add), ``@monitored``, their async
twins where listed, the peers' decorators, and (with the peers and in ``discard``) the
hand-written span alone, which is the work the peers' decorators do: they record no metrics.

Run: ``.venv/bin/python benchmarks/bench_overhead.py [--quick|--full] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    BlackholeEndpoint,
    OtlpSink,
    closed_port,
    machine_description,
)
from _overhead_report import METRICS, analyse, render  # noqa: E402

# ------------------------------------------------------------------------- the function under test
MODEL = "google/flan-t5-large"
PROVIDER = "huggingface"
OPERATION = "text_generation"
ANALYSIS = "code_review"
SPAN_NAME = f"{OPERATION} {MODEL}"
SPAN_ATTRIBUTES = {
    "gen_ai.operation.name": OPERATION,
    "gen_ai.provider.name": PROVIDER,
    "gen_ai.request.model": MODEL,
    "modelwatch.analysis": ANALYSIS,
}
METRIC_ATTRIBUTES = dict(SPAN_ATTRIBUTES)
COST_USD = 0.0006  # the shipped per-request price of MODEL: @monitored adds it to modelwatch.cost
DURATION_BUCKETS = [0.01 * 2**i for i in range(14)]
PROMPT = "Review this code: x = 1"


def generate(prompt: str) -> str:
    """The model call, reduced to nothing so only instrumentation is measured."""
    return prompt


async def agenerate(prompt: str) -> str:
    return prompt


# ------------------------------------------------------------------------- variants
Decorate = Callable[[Callable[..., Any]], Callable[..., Any]]
Variant = tuple[Decorate, bool, Callable[[], None] | None]  # decorate, is_async, before_batch

SCENARIOS = {
    # name: (python, async variants?, peer)
    "discard": ("main", True, None),
    "otlp-live": ("main", True, None),
    "otlp-unsampled": ("main", False, None),
    "otlp-dead-refused": ("main", False, None),
    "otlp-dead-hung": ("main", False, None),
    "traceloop": ("peers", True, "traceloop"),
    "openlit": ("peers", False, "openlit"),
}


def handwritten(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What a careful engineer writes by hand with the OTel API: the same span, two metrics."""
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind

    tracer = trace.get_tracer("bench.handwritten")
    meter = metrics.get_meter("bench.handwritten")
    duration = meter.create_histogram(
        "bench.handwritten.duration", unit="s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
    )
    cost = meter.create_counter("bench.handwritten.cost", unit="{USD}")
    perf_counter = time.perf_counter

    if asyncio.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            start = perf_counter()
            with tracer.start_as_current_span(
                SPAN_NAME, kind=SpanKind.CLIENT, attributes=SPAN_ATTRIBUTES
            ) as span:
                result = await fn(*args, **kwargs)
                span.set_attribute("modelwatch.cost", COST_USD)
            duration.record(perf_counter() - start, METRIC_ATTRIBUTES)
            cost.add(COST_USD, METRIC_ATTRIBUTES)
            return result

        return awrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = perf_counter()
        with tracer.start_as_current_span(
            SPAN_NAME, kind=SpanKind.CLIENT, attributes=SPAN_ATTRIBUTES
        ) as span:
            result = fn(*args, **kwargs)
            span.set_attribute("modelwatch.cost", COST_USD)
        duration.record(perf_counter() - start, METRIC_ATTRIBUTES)
        cost.add(COST_USD, METRIC_ATTRIBUTES)
        return result

    return wrapper


def handwritten_span_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The same span and nothing else: the work the peers' decorators do (they record no
    metrics), so their rows can be read against it."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    tracer = trace.get_tracer("bench.handwritten")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(
            SPAN_NAME, kind=SpanKind.CLIENT, attributes=SPAN_ATTRIBUTES
        ) as span:
            result = fn(*args, **kwargs)
            span.set_attribute("modelwatch.cost", COST_USD)
        return result

    return wrapper


def monitored(fn: Callable[..., Any]) -> Callable[..., Any]:
    import modelwatch

    return modelwatch.monitored(  # type: ignore[no-any-return]
        model=MODEL, provider=PROVIDER, operation=OPERATION, analysis=ANALYSIS
    )(fn)


def _identity(fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn


# ------------------------------------------------------------------------- pipelines (in workers)
def _discard_pipeline() -> dict[str, Any]:
    from _common import discard_exporters
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    spans, metrics_exporter = discard_exporters()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    reader = PeriodicExportingMetricReader(metrics_exporter, export_interval_millis=10_000)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return {
        "pipeline": "host SDK providers; BatchSpanProcessor -> discard; "
        "metrics reader 10 s -> discard"
    }


def _configure_pipeline(endpoint: str, sample_ratio: float | None) -> dict[str, Any]:
    import modelwatch

    config = modelwatch.configure(
        service_name="modelwatch-bench", otlp_endpoint=endpoint, sample_ratio=sample_ratio
    )
    return {
        "pipeline": f"modelwatch.configure(otlp_endpoint={endpoint}, protocol="
        f"{config.otlp_protocol}, sample_ratio={config.sample_ratio})"
    }


def build(scenario: str, endpoints: dict[str, str]) -> tuple[dict[str, Variant], dict[str, Any]]:
    """Install the scenario's pipeline in this process and return its variants."""
    _python, with_async, peer = SCENARIOS[scenario]
    info: dict[str, Any]
    peer_variants: dict[str, Variant] = {}
    if scenario == "discard":
        info = _discard_pipeline()
    elif scenario == "otlp-live":
        info = _configure_pipeline(endpoints["live"], None)
    elif scenario == "otlp-unsampled":
        info = _configure_pipeline(endpoints["live"], 0.0)
    elif scenario == "otlp-dead-refused":
        info = _configure_pipeline(endpoints["refused"], None)
    elif scenario == "otlp-dead-hung":
        info = _configure_pipeline(endpoints["hung"], None)
    else:
        assert peer is not None
        import peers

        peer_variants, versions = peers.SETUPS[peer](endpoints["live"])
        info = {"pipeline": f"{peer}'s own init, OTLP/HTTP to {endpoints['live']}", **versions}
    variants: dict[str, Variant] = {
        "bare": (_identity, False, None),
        "hand-written OTel": (handwritten, False, None),
        "@monitored": (monitored, False, None),
    }
    if scenario in ("discard", "traceloop", "openlit"):
        variants["hand-written OTel, span only"] = (handwritten_span_only, False, None)
    if with_async:
        variants["bare async"] = (_identity, True, None)
        variants["hand-written OTel async"] = (handwritten, True, None)
        variants["@monitored async"] = (monitored, True, None)
    variants.update(peer_variants)
    from importlib.metadata import version

    info["opentelemetry-sdk"] = version("opentelemetry-sdk")
    info["python"] = sys.version.split()[0]
    return variants, info


# ------------------------------------------------------------------------- worker
def _time_sync(fn: Callable[..., Any], n: int) -> tuple[int, int]:
    arg = PROMPT
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    start, start_cpu = wall(), cpu()
    for _ in itertools.repeat(None, n):
        fn(arg)
    return wall() - start, cpu() - start_cpu


async def _time_async(fn: Callable[..., Any], n: int) -> tuple[int, int]:
    arg = PROMPT
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    start, start_cpu = wall(), cpu()
    for _ in itertools.repeat(None, n):
        await fn(arg)
    return wall() - start, cpu() - start_cpu


def _sanity(decorate: Decorate, is_async: bool, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """Call the variant once on a probe: was a span current, and was it sampled?"""
    from opentelemetry import trace

    def probe(prompt: str) -> dict[str, Any]:
        ctx = trace.get_current_span().get_span_context()
        return {"span": ctx.is_valid, "sampled": ctx.trace_flags.sampled}

    async def aprobe(prompt: str) -> dict[str, Any]:
        return probe(prompt)

    if is_async:
        return dict(loop.run_until_complete(decorate(aprobe)(PROMPT)))
    return dict(decorate(probe)(PROMPT))


def worker(
    scenario: str, endpoints: dict[str, str], chunk_size: int, cycles: int, warmup: int
) -> None:
    # the protocol owns the real stdout; anything the libraries print goes to stderr
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import _common

    _common.install_offline_guard()

    def send(obj: Any) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        variants, info = build(scenario, endpoints)
        loop = asyncio.new_event_loop()
        fns: dict[str, tuple[Callable[..., Any], bool, Callable[[], None] | None]] = {}
        sanity: dict[str, Any] = {}
        for name, (decorate, is_async, before) in variants.items():
            fns[name] = (decorate(agenerate if is_async else generate), is_async, before)
            if before is not None:
                before()
            sanity[name] = _sanity(decorate, is_async, loop)
    except Exception as exc:  # report, do not hang the coordinator
        import traceback

        send({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return

    def chunk(name: str) -> tuple[int, int]:
        fn, is_async, before = fns[name]
        if before is not None:
            before()
        if is_async:
            return loop.run_until_complete(_time_async(fn, chunk_size))
        return _time_sync(fn, chunk_size)

    def one_round(names: list[str]) -> dict[str, Any]:
        """``cycles`` passes; each pass runs one chunk of every variant in a new shuffled order,
        so every variant sees the same machine load to within a few milliseconds."""
        wall = dict.fromkeys(names, 0)
        cpu = dict.fromkeys(names, 0)
        for _ in range(cycles):
            rng.shuffle(names)
            for name in names:
                w, c = chunk(name)
                wall[name] += w
                cpu[name] += c
        calls = cycles * chunk_size
        return {
            "ns_per_call": {k: v / calls for k, v in wall.items()},
            "cpu_ns_per_call": {k: v / calls for k, v in cpu.items()},
        }

    rng = random.Random(scenario)
    names = list(fns)
    for _ in range(warmup):  # also fills a dead endpoint's span queue: its steady state
        one_round(names)
    send({"ready": True, "variants": list(fns), "info": info, "sanity": sanity})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "round":
            gc.collect()
            send(one_round(names))
        elif cmd["cmd"] == "finish":
            extra: dict[str, Any] = {
                "blocked_connections": sorted(set(_common.blocked_connections))
            }
            try:
                from modelwatch._config import _BoundedBatchSpanProcessor

                extra["modelwatch_spans_dropped"] = _BoundedBatchSpanProcessor.dropped
            except Exception:  # older or newer modelwatch: not essential
                pass
            send(extra)
            proto.close()
            os._exit(0)  # a dead endpoint would make a graceful shutdown wait for its timeout


# ------------------------------------------------------------------------- coordinator
def peers_python(explicit: str | None) -> str | None:
    for candidate in (
        explicit,
        os.environ.get("MODELWATCH_PEERS_PYTHON"),
        "/tmp/peers-venv/bin/python",
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class Worker:
    def __init__(self, scenario: str, python: str, args: list[str], log_dir: Path) -> None:
        self.scenario = scenario
        self.log_path = log_dir / f"{scenario}.log"
        self._log = self.log_path.open("w")
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONHASHSEED="0")
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", scenario, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            cwd=str(HERE),
        )

    def recv(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise RuntimeError(
                f"worker {self.scenario} exited ({self.proc.returncode}); see {self.log_path}"
            )
        return json.loads(line)  # type: ignore[no-any-return]

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()


MODES = {  # calls per chunk, chunks per variant per round, timed rounds, warm-up rounds
    "quick": (200, 4, 8, 2),
    "default": (200, 10, 24, 2),
    "full": (200, 20, 60, 3),
}


def run(mode: str, peers_py: str | None, scenarios: list[str] | None = None) -> dict[str, Any]:
    chunk, cycles, rounds, warmup = MODES[mode]
    sink, hung = OtlpSink(), BlackholeEndpoint()
    endpoints = {
        "live": sink.endpoint,
        "hung": hung.endpoint,
        "refused": f"http://127.0.0.1:{closed_port()}",
    }
    log_dir = Path(tempfile.mkdtemp(prefix="modelwatch-bench-"))
    args = [
        "--endpoints", json.dumps(endpoints), "--chunk", str(chunk),
        "--cycles", str(cycles), "--warmup", str(warmup),
    ]  # fmt: skip
    skipped: dict[str, str] = {}
    workers: list[Worker] = []
    for scenario in scenarios or list(SCENARIOS):
        which = SCENARIOS[scenario][0]
        python = sys.executable if which == "main" else peers_py
        if python is None:
            skipped[scenario] = (
                "no peers venv: create it with `python3.11 -m venv /tmp/peers-venv && "
                "/tmp/peers-venv/bin/pip install -e . traceloop-sdk openlit` "
                "(or pass --peers-python)"
            )
            continue
        workers.append(Worker(scenario, python, args, log_dir))
    meta: dict[str, Any] = {}
    ready: list[Worker] = []
    for w in workers:
        try:
            hello = w.recv()
        except Exception as exc:
            skipped[w.scenario] = str(exc)
            w.close()
            continue
        if "error" in hello:
            skipped[w.scenario] = hello["error"]
            print(f"[{w.scenario}] setup failed: {hello['traceback']}", file=sys.stderr)
            w.close()
            continue
        meta[w.scenario] = {k: hello[k] for k in ("variants", "info", "sanity")}
        ready.append(w)
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        metric: {w.scenario: {v: [] for v in meta[w.scenario]["variants"]} for w in ready}
        for metric in METRICS
    }
    rng = random.Random(20261123)
    started = time.monotonic()
    for index in range(rounds):
        order = list(ready)
        rng.shuffle(order)
        for w in order:
            w.send({"cmd": "round"})
            reply = w.recv()
            for metric in METRICS:
                for name, value in reply[metric].items():
                    samples[metric][w.scenario][name].append(value)
        print(f"  round {index + 1}/{rounds} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    for w in ready:
        w.send({"cmd": "finish"})
        meta[w.scenario]["finish"] = w.recv()
        w.close()
    sink_requests = dict(sink.requests)
    sink.close()
    hung.close()
    return {
        "mode": mode,
        "calls_per_round": chunk * cycles,
        "chunk": chunk,
        "rounds": rounds,
        "machine": machine_description(),
        "endpoints": endpoints,
        "sink_requests": sink_requests,
        "skipped": skipped,
        "meta": meta,
        "samples": samples,
        "elapsed_s": round(time.monotonic() - started, 1),
        "worker_logs": str(log_dir),
    }


# ------------------------------------------------------------------------- analysis
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about 30 s")
    mode.add_argument("--full", action="store_true", help="more rounds and larger batches")
    parser.add_argument(
        "--peers-python", help="interpreter of the venv with traceloop-sdk, openlit"
    )
    parser.add_argument("--scenarios", help="comma-separated subset of: " + ", ".join(SCENARIOS))
    parser.add_argument("--json", help="write raw samples and analysis to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--endpoints", help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cycles", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, json.loads(args.endpoints), args.chunk, args.cycles, args.warmup)
        return 0
    chosen = "quick" if args.quick else "full" if args.full else "default"
    scenarios = args.scenarios.split(",") if args.scenarios else None
    results = run(chosen, peers_python(args.peers_python), scenarios)
    analysis = analyse(results)
    print(render(results, analysis))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**results, "analysis": analysis}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
