"""OpenTelemetry -> Prometheus name translation, checked against the real exporter."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry

from modelwatch import semconv
from modelwatch.ops.durations import format_duration, parse_duration
from modelwatch.ops.promnames import COLLECTOR, NAMINGS, PLAIN, SDK, label_name, metric_name


def _exported_names() -> set[str]:
    """Every sample name the in-process exporter produces for one point of each metric."""
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)  # type: ignore[call-arg]
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("modelwatch")

    def one(_options: CallbackOptions) -> list[Observation]:
        return [Observation(1.0, {})]

    for spec in semconv.METRICS:
        kw = {"unit": spec.unit, "description": spec.description}
        if spec.instrument == "histogram":
            meter.create_histogram(spec.name, **kw).record(0.5)
        elif spec.instrument == "counter":
            meter.create_counter(spec.name, **kw).add(1)
        elif spec.instrument == "up_down_counter":
            meter.create_up_down_counter(spec.name, **kw).add(1)
        elif spec.instrument == "observable_counter":
            meter.create_observable_counter(spec.name, [one], **kw)
        elif spec.instrument == "observable_gauge":
            meter.create_observable_gauge(spec.name, [one], **kw)
        else:
            meter.create_observable_up_down_counter(spec.name, [one], **kw)
    try:
        return {s.name for family in registry.collect() for s in family.samples}
    finally:
        provider.shutdown()


def _expected(spec: semconv.MetricSpec) -> set[str]:
    name = metric_name(spec, SDK)
    if spec.instrument == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return {name}


def test_sdk_naming_matches_what_the_prometheus_exporter_really_emits() -> None:
    exported = _exported_names()
    for spec in semconv.METRICS:
        assert _expected(spec) <= exported, spec.name


@pytest.mark.parametrize("spec", semconv.METRICS, ids=lambda s: s.name)
def test_sdk_naming_agrees_with_metricspec_prometheus_name(spec: semconv.MetricSpec) -> None:
    assert metric_name(spec) == spec.prometheus_name


def test_presets() -> None:
    assert set(NAMINGS) == {"sdk", "collector", "plain"}
    assert metric_name(semconv.OPERATION_DURATION, PLAIN) == "gen_ai_client_operation_duration"
    assert metric_name(semconv.FAILOVERS, PLAIN) == "modelwatch_failovers"
    assert metric_name(semconv.FAILOVERS, COLLECTOR) == "modelwatch_failovers_total"
    # a state, not a ratio: no `_ratio` under the Collector's naming either
    assert metric_name(semconv.CIRCUIT_STATE, COLLECTOR) == "modelwatch_circuit_state"
    assert metric_name(semconv.CIRCUIT_STATE, SDK) == "modelwatch_circuit_state"
    assert metric_name(semconv.BUDGET_USED, COLLECTOR) == "modelwatch_budget_used_ratio"
    assert metric_name(semconv.TOKEN_USAGE, COLLECTOR) == "gen_ai_client_token_usage"
    assert metric_name(semconv.COST) == "modelwatch_cost_usd_total"  # the unit is in the name
    assert metric_name(semconv.COST, COLLECTOR) == "modelwatch_cost_usd_total"


def test_units_outside_semconv() -> None:
    spec = semconv.MetricSpec("a.b", "counter", "By/s", "")
    assert metric_name(spec) == "a_b_bytes_per_seconds_total"
    assert metric_name(semconv.MetricSpec("x_seconds", "histogram", "s", "")) == "x_seconds"


def test_label_names() -> None:
    assert label_name(semconv.GEN_AI_REQUEST_MODEL) == "gen_ai_request_model"
    assert label_name(semconv.ERROR_TYPE) == "error_type"
    assert label_name("a-b..c") == "a_b_c"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("3d", 259200),
        ("1w", 604800),
        ("0", 0),
        ("1y2w3d4h5m6s", 365 * 86400 + 14 * 86400 + 3 * 86400 + 4 * 3600 + 5 * 60 + 6),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    # what promtool rejects too: units out of order or twice, a bare number other than 0
    ["", "m5", "5x", "1h 5m", "500ms", "-1m", "30m1h", "1h1h", "00", "120", "1m1ms", "s"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0, 1, 59, 60, 61, 3600, 5400, 86400, 90061])
def test_format_duration_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_duration_spelling() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(86400) == "1d"
    with pytest.raises(ValueError):
        format_duration(-1)
