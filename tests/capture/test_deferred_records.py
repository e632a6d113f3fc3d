"""Histogram records of the call path are replayed at collection time: the exported data is
the same, bounded in memory, and nothing is lost or counted twice."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import modelwatch
from modelwatch.capture import _deferred, _telemetry
from modelwatch.testing import Captured

DURATION = "gen_ai.client.operation.duration"


def test_records_wait_for_the_collection_and_arrive_exactly_once(
    modelwatch_capture: Captured,
) -> None:
    tel = _telemetry.telemetry()
    assert tel.defers
    for i in range(5):
        with modelwatch.monitored(model="m", provider="p") as call:
            call.record_usage(input_tokens=10 + i, output_tokens=1)
    assert len(tel._deferred) == 15  # 5 durations, 10 token counts: nothing recorded yet
    assert modelwatch_capture.metric_count(DURATION) == 5  # a collection replays them
    assert not tel._deferred
    assert modelwatch_capture.metric_count(DURATION) == 5  # and only once
    assert modelwatch_capture.metric_sum(
        "gen_ai.client.token.usage", {"gen_ai.token.type": "input"}
    ) == sum(10 + i for i in range(5))


def test_past_the_cap_a_background_drain_records_them_all(
    monkeypatch: pytest.MonkeyPatch, modelwatch_capture: Captured
) -> None:
    monkeypatch.setattr(_deferred, "DEFER_CAP", 3)
    tel = _telemetry.telemetry()
    for _ in range(10):
        with modelwatch.monitored(model="capped", provider="p"):
            pass
        drainer = tel._meters.deferred.drainer
        if drainer is not None:
            drainer.join()
    # steady state: the calls never recorded on the spot, and the queue never stayed full
    assert len(tel._deferred) <= 3
    assert modelwatch_capture.metric_count(DURATION, {"gen_ai.request.model": "capped"}) == 10


def test_past_the_hard_cap_records_happen_on_the_spot(
    monkeypatch: pytest.MonkeyPatch, modelwatch_capture: Captured
) -> None:
    monkeypatch.setattr(_deferred, "DEFER_CAP", 2)
    tel = _telemetry.telemetry()
    monkeypatch.setattr(tel._meters.deferred, "_start_drainer", lambda: None)  # a stuck drain
    for _ in range(20):
        with modelwatch.monitored(model="stuck", provider="p"):
            pass
    assert len(tel._deferred) == 2 * _deferred.HARD_CAP_FACTOR  # bounded
    assert modelwatch_capture.metric_count(DURATION, {"gen_ai.request.model": "stuck"}) == 20


def test_without_an_sdk_meter_provider_nothing_is_deferred() -> None:
    with _telemetry.use_providers(TracerProvider(), NoOpMeterProvider()) as tel:
        assert not tel.defers
        with modelwatch.monitored(model="m", provider="p"):
            pass
        assert not tel._deferred


def test_flush_through_the_provider_collects_the_deferred_records() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with _telemetry.use_providers(TracerProvider(), provider) as tel:
        with modelwatch.monitored(model="m", provider="p"):
            pass
        assert tel._deferred
        data = reader.get_metrics_data()
        assert data is not None
        names = [
            m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        ]
        assert DURATION in names
        assert not tel._deferred
    provider.shutdown()


def test_a_forked_child_does_not_replay_the_parents_records() -> None:
    import os

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    with _telemetry.use_providers(TracerProvider(), provider) as tel:
        with modelwatch.monitored(model="m", provider="p"):
            pass
        assert tel._deferred
        pid = os.fork()
        if pid == 0:
            os._exit(0 if not tel._deferred else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert tel._deferred  # the parent still has its own
    provider.shutdown()


def _histogram_points(reader: InMemoryMetricReader, name: str) -> dict[Any, Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        frozenset(p.attributes.items()): (p.count, p.sum, p.min, p.max, tuple(p.bucket_counts))
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    }


def test_the_bulk_replay_exports_what_one_record_per_value_would() -> None:
    values = [0.0, 0.004, 0.05, 0.05, 0.3, 1.7, 2.5, 9.0, 120.0, 1e6] * 7
    direct_reader, replay_reader = InMemoryMetricReader(), InMemoryMetricReader()
    direct = MeterProvider(metric_readers=[direct_reader])
    replayed = MeterProvider(metric_readers=[replay_reader])
    shared = {"gen_ai.request.model": "m"}
    buckets = [0.01, 0.1, 1.0, 10.0]
    hist_direct = direct.get_meter("t").create_histogram(
        "h", explicit_bucket_boundaries_advisory=buckets
    )
    hist_replay = replayed.get_meter("t").create_histogram(
        "h", explicit_bucket_boundaries_advisory=buckets
    )
    tracer = TracerProvider()
    batch = []
    for i, value in enumerate(values):
        attrs = shared if i % 2 else {"gen_ai.request.model": "m", "error.type": "x"}
        hist_direct.record(value, attrs)
        span = tracer.get_tracer("t").start_span("s")
        batch.append((hist_replay, value, attrs, span.get_span_context()))
        span.end()
    _deferred.replay(batch)
    got, want = _histogram_points(replay_reader, "h"), _histogram_points(direct_reader, "h")
    assert got.keys() == want.keys()
    assert len(got) == 2
    for key, (count, total, low, high, buckets) in want.items():
        assert got[key] == (count, pytest.approx(total, rel=1e-12), low, high, buckets)
    direct.shutdown()
    replayed.shutdown()


def test_a_view_with_another_aggregation_gets_every_value_recorded() -> None:
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name="h", aggregation=ExponentialBucketHistogramAggregation())],
    )
    hist = provider.get_meter("t").create_histogram("h")
    _deferred.replay([(hist, float(v), {"k": "v"}, None) for v in range(1, 51)])
    data = reader.get_metrics_data()
    assert data is not None
    (point,) = [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    ]
    assert point.count == 50
    assert point.sum == sum(range(1, 51))
    provider.shutdown()


def test_sampled_calls_leave_exemplars_that_link_to_their_trace() -> None:
    from opentelemetry.sdk.metrics._internal.exemplar import TraceBasedExemplarFilter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], exemplar_filter=TraceBasedExemplarFilter())
    tracer_provider = TracerProvider()
    with _telemetry.use_providers(tracer_provider, provider) as tel:
        traces = set()
        for _ in range(20):
            with modelwatch.monitored(model="ex", provider="p") as call:
                traces.add(call._span.get_span_context().trace_id)  # type: ignore[union-attr]
        assert tel._deferred  # deferred: the exemplar context travelled with the record
        data = reader.get_metrics_data()
    assert data is not None
    exemplars = [
        e
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == DURATION
        for p in m.data.data_points
        for e in p.exemplars
    ]
    assert exemplars
    assert {e.trace_id for e in exemplars} <= traces
    provider.shutdown()

    # unsampled calls leave none
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], exemplar_filter=TraceBasedExemplarFilter())
    with _telemetry.use_providers(TracerProvider(sampler=ALWAYS_OFF), provider):
        for _ in range(5):
            with modelwatch.monitored(model="ex", provider="p"):
                pass
        data = reader.get_metrics_data()
    assert data is not None
    counts = [
        (p.count, len(p.exemplars))
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == DURATION
        for p in m.data.data_points
    ]
    assert counts == [(5, 0)]
    provider.shutdown()
