"""Fixtures for the resilience tests: in-memory telemetry, a manual clock, structlog capture."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelwatch._clock import ManualClock
from modelwatch.capture._telemetry import use_providers
from modelwatch.resilience import hooks
from support.redis_outage import watched  # noqa: F401 (a fixture)


@dataclass
class Telemetry:
    """What modelwatch emitted inside the test."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, point)`` for every data point of ``metric``."""
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        if data is None:
            return found
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        found.extend((dict(p.attributes or {}), p) for p in m.data.data_points)
        return found

    def counter(self, metric: str, **attrs: Any) -> float:
        """Sum of a counter's points whose attributes include ``attrs``."""
        return sum(
            p.value for a, p in self.points(metric) if all(a.get(k) == v for k, v in attrs.items())
        )


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    with use_providers(tp, mp):
        yield Telemetry(exporter, reader)
    mp.shutdown()
    tp.shutdown()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture(autouse=True)
def fresh_hook_listeners() -> Iterator[None]:
    """Default hook listeners, freshly built per test (the log summary keeps per-breaker
    state between transitions)."""
    hooks.reset_listeners()
    yield
    hooks.reset_listeners()
