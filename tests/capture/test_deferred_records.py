"""Histogram records of the call path are replayed at collection time: the exported data is
the same, bounded in memory, and nothing is lost or counted twice."""

from __future__ import annotations

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import modelwatch
from modelwatch.capture import _telemetry
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


def test_past_the_cap_records_happen_on_the_spot(
    monkeypatch: pytest.MonkeyPatch, modelwatch_capture: Captured
) -> None:
    monkeypatch.setattr(_telemetry, "DEFER_CAP", 3)
    tel = _telemetry.telemetry()
    for _ in range(10):
        with modelwatch.monitored(model="capped", provider="p"):
            pass
    assert len(tel._deferred) == 3
    assert modelwatch_capture.metric_count(DURATION, {"gen_ai.request.model": "capped"}) == 10


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
