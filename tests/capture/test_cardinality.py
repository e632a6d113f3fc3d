"""100,000 distinct analysis values: modelwatch's own registries stay bounded (one overflow
set, ``otel.metric.overflow=true``), the exported series stay bounded, and no count is lost."""

from __future__ import annotations

import gc
import sys
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from structlog.testing import capture_logs

import modelwatch
from modelwatch.capture import _bounded, _spec, _telemetry
from modelwatch.capture.cost import cost_of

MODEL = "google/flan-t5-large"
PRICE = cost_of(MODEL, None, None) or 0.0
DISTINCT = 100_000
LIMIT = _bounded.CARDINALITY_LIMIT
OVERFLOW = {"otel.metric.overflow": True}


def _metrics(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                found.setdefault(m.name, []).extend(m.data.data_points)
    return found


def test_100k_distinct_values_stay_bounded_and_counts_land_on_the_overflow_set() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with (
        capture_logs() as logs,
        _telemetry.use_providers(TracerProvider(sampler=ALWAYS_OFF), provider) as tel,
    ):
        blocks = 0
        for i in range(DISTINCT):
            with modelwatch.monitored(model=MODEL, provider="huggingface", analysis=f"a{i}"):
                pass
            if i == DISTINCT // 2:
                tel.drain()
                gc.collect()
                blocks = sys.getallocatedblocks()
        tel.drain()
        gc.collect()
        growth = sys.getallocatedblocks() - blocks
        points = _metrics(reader)
    provider.shutdown()

    # modelwatch's registries: bounded, with the overflow set
    assert len(tel._cost_totals) == LIMIT + 1
    assert len(_spec.seen_inflight_keys) <= LIMIT + 1
    assert _bounded.OVERFLOW_KEY in _spec.seen_inflight_keys
    # memory: the second 50,000 new values added (almost) nothing
    assert growth < 20_000, growth

    # exported series: bounded; the overflow set carries the excess exactly
    cost = points["modelwatch.cost"]
    assert len(cost) == LIMIT + 1
    (overflow_cost,) = [p for p in cost if dict(p.attributes) == OVERFLOW]
    assert abs(overflow_cost.value - (DISTINCT - LIMIT) * PRICE) < 1e-6
    assert abs(sum(p.value for p in cost) - DISTINCT * PRICE) < 1e-6
    durations = points["gen_ai.client.operation.duration"]
    assert len(durations) <= LIMIT + 1
    assert sum(p.count for p in durations) == DISTINCT  # never dropped
    for name in ("modelwatch.calls.in_flight", "modelwatch.calls.oldest_in_flight"):
        assert len(points[name]) <= LIMIT + 1
        assert any(dict(p.attributes) == OVERFLOW for p in points[name])
    # warned once per registry
    warnings = [e for e in logs if e.get("event") == "modelwatch.cardinality.overflow"]
    assert sorted(e["registry"] for e in warnings) == sorted({e["registry"] for e in warnings})
    assert "cost" in {e["registry"] for e in warnings}  # (in-flight: once per process)


def test_bounded_registry_shares_the_overflow_object() -> None:
    registry: _bounded.BoundedRegistry[str, list[str]] = _bounded.BoundedRegistry(
        "things", 2, overflow="~overflow"
    )
    a = registry.get("a", lambda k: [k])
    assert registry.get("a", lambda k: [k]) is a
    registry.get("b", lambda k: [k])
    c = registry.get("c", lambda k: [k])
    assert c == ["~overflow"]
    assert registry.get("d", lambda k: [k]) is c
    assert len(registry) == 3
