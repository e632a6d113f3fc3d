"""One telemetry holder per meter provider: a call before ``configure()``, a
``modelwatch.testing.capture()`` block and threads racing to make the first call never build a
second one (the SDK would drop its observable callbacks: cost frozen, durations lost)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import modelwatch
from modelwatch.capture import _telemetry
from modelwatch.capture.cost import cost_of
from modelwatch.testing import capture

MODEL = "google/flan-t5-large"  # priced per request
PRICE = cost_of(MODEL, None, None) or 0.0
DURATION = "gen_ai.client.operation.duration"


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


def _call() -> None:
    with modelwatch.monitored(model=MODEL, provider="huggingface"):
        pass


def test_a_capture_block_leaves_the_outer_providers_counting_exactly() -> None:
    assert PRICE > 0
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with _telemetry.use_providers(TracerProvider(), provider):
        for _ in range(3):
            _call()
        with capture() as inner:
            _call()
        for _ in range(4):
            _call()
        durations = sum(p.count for p in _points(reader, DURATION))
        cost = sum(p.value for p in _points(reader, "modelwatch.cost"))
        for _ in range(2):  # and still after a collection
            _call()
        durations_after = sum(p.count for p in _points(reader, DURATION))
        cost_after = sum(p.value for p in _points(reader, "modelwatch.cost"))
    provider.shutdown()
    assert inner.metric_count(DURATION) == 1
    assert durations == 7
    assert abs(cost - 7 * PRICE) < 1e-12
    assert durations_after == 9
    assert abs(cost_after - 9 * PRICE) < 1e-12


def test_threads_racing_to_the_first_call_share_one_holder() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with _telemetry.use_providers(TracerProvider(), provider):
        _telemetry.invalidate()
        with ThreadPoolExecutor(8) as pool:
            holders = list(pool.map(lambda _: _telemetry.telemetry(), range(64)))
        assert len({id(h._meters) for h in holders}) == 1
    provider.shutdown()


def _run_child(script: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


_HOST_READER = """
    import json, threading
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    import modelwatch

    MODEL = "google/flan-t5-large"

    def call():
        with modelwatch.monitored(model=MODEL, provider="huggingface"):
            pass

    def totals(reader):
        data = reader.get_metrics_data()
        count = cost = 0.0
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.data.data_points:
                        if m.name == "gen_ai.client.operation.duration":
                            count += p.count
                        elif m.name == "modelwatch.cost":
                            cost += p.value
        return {"count": count, "cost": cost}
"""


def test_a_call_before_configure_does_not_freeze_cost_or_lose_durations() -> None:
    # the first call runs on the API's proxy provider; the host then installs its own, and
    # configure() adopts it: one holder, exact counts (the first call's records waited)
    result = _run_child(
        _HOST_READER
        + """
    call()
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    modelwatch.configure(service_name="svc")
    for _ in range(500):
        call()
    first = totals(reader)
    for _ in range(250):
        call()
    print(json.dumps({"first": first, "second": totals(reader)}))
    """
    )
    assert result["first"]["count"] == 501
    assert abs(result["first"]["cost"] - 501 * PRICE) < 1e-9
    assert result["second"]["count"] == 751
    assert abs(result["second"]["cost"] - 751 * PRICE) < 1e-9


def test_a_call_before_configure_with_its_own_pipeline_exports_exact_counts(
    otlp_receiver: Any,
) -> None:
    script = (
        _HOST_READER
        + f"""
    call()
    modelwatch.configure(service_name="svc", otlp_endpoint={otlp_receiver.http_endpoint!r})
    for _ in range(300):
        call()
    assert modelwatch.flush(10.0)
    print(json.dumps({{}}))
    """
    )
    _run_child(script)
    otlp_receiver.wait_for_metric(DURATION)
    points = otlp_receiver.metric_points()
    last = max(p.time_unix_nano for p in points)  # cumulative: the last export has it all
    final = [p for p in points if p.time_unix_nano == last]
    assert sum(p.count or 0 for p in final if p.name == DURATION) == 301
    cost = sum(p.value or 0 for p in final if p.name == "modelwatch.cost")
    assert abs(cost - 301 * PRICE) < 1e-9


def test_threads_racing_to_the_first_call_lose_nothing_in_30_fresh_processes() -> None:
    script = (
        _HOST_READER
        + """
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    barrier = threading.Barrier(8)
    import sys
    sys.setswitchinterval(1e-6)  # threads switch often: the first calls overlap

    def work():
        barrier.wait()
        for _ in range(25):
            call()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(totals(reader)))
    """
    )
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: _run_child(script), range(30)))
    assert [r["count"] for r in results] == [200] * 30
    assert all(abs(r["cost"] - 200 * PRICE) < 1e-9 for r in results)


def test_an_unhashable_provider_still_gets_one_holder() -> None:
    from opentelemetry.metrics import NoOpMeterProvider

    class Unhashable(NoOpMeterProvider):
        __hash__ = None  # type: ignore[assignment]

    provider = Unhashable()
    with _telemetry.use_providers(TracerProvider(), provider) as first:
        _call()
    with _telemetry.use_providers(TracerProvider(), provider) as second:
        _call()
    assert first._meters is second._meters


def test_duration_points_exported_over_otlp_carry_exemplars_of_their_traces(
    otlp_receiver: Any,
) -> None:
    """The Grafana exemplar-to-trace jump: configure()'s own OTLP pipeline, deferred records."""
    script = (
        _HOST_READER
        + f"""
    modelwatch.configure(service_name="svc", otlp_endpoint={otlp_receiver.http_endpoint!r})
    for _ in range(5):
        call()
    assert modelwatch.flush(10.0)
    print(json.dumps({{}}))
    """
    )
    _run_child(script)
    spans = otlp_receiver.wait_for_spans(5)
    traces = {s.trace_id for s in spans}
    otlp_receiver.wait_for_metric(DURATION)
    exemplar_traces = {
        exemplar.trace_id.hex()
        for request in otlp_receiver.requests("metrics")
        for rm in request.message.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == DURATION
        for point in metric.histogram.data_points
        for exemplar in point.exemplars
    }
    assert exemplar_traces
    assert exemplar_traces <= traces
