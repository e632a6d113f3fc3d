"""Telemetry names are API: pinned here. The public surface is declared once and complete."""

from __future__ import annotations

import inspect

import modelwatch
from modelwatch import semconv


def test_metric_names_instruments_and_units_are_pinned() -> None:
    pinned = {(m.name, m.instrument, m.unit) for m in semconv.METRICS}
    assert pinned >= {
        ("gen_ai.client.operation.duration", "histogram", "s"),
        ("gen_ai.client.token.usage", "histogram", "{token}"),
        ("gen_ai.client.operation.time_to_first_chunk", "histogram", "s"),
        ("gen_ai.invoke_agent.duration", "histogram", "s"),
        ("gen_ai.execute_tool.duration", "histogram", "s"),
        ("modelwatch.cost", "observable_counter", "usd"),
        ("modelwatch.calls.in_flight", "observable_up_down_counter", "{call}"),
        ("modelwatch.calls.oldest_in_flight", "observable_gauge", "s"),
        ("modelwatch.circuit.state", "observable_gauge", "{state}"),
        ("modelwatch.circuit.transitions", "counter", "{transition}"),
        ("modelwatch.failovers", "counter", "{failover}"),
        ("modelwatch.failover.duration", "histogram", "s"),
        ("modelwatch.health.status", "observable_gauge", "1"),
        ("modelwatch.health.check.duration", "histogram", "s"),
        ("modelwatch.rate_limit.remaining", "observable_gauge", "1"),
        ("modelwatch.budget.used", "observable_gauge", "1"),
    }
    assert len({m.name for m in semconv.METRICS}) == len(semconv.METRICS)


def test_buckets_are_pinned() -> None:
    assert semconv.DURATION_BUCKETS == (
        0.01,
        0.02,
        0.04,
        0.08,
        0.16,
        0.32,
        0.64,
        1.28,
        2.56,
        5.12,
        10.24,
        20.48,
        40.96,
        81.92,
    )
    assert semconv.TOKEN_BUCKETS[0] == 1
    assert semconv.TOKEN_BUCKETS[-1] == 67108864
    assert all(b == a * 4 for a, b in zip(semconv.TOKEN_BUCKETS, semconv.TOKEN_BUCKETS[1:]))
    assert semconv.OPERATION_DURATION.buckets == semconv.DURATION_BUCKETS
    assert semconv.TOKEN_USAGE.buckets == semconv.TOKEN_BUCKETS


def test_prometheus_names_follow_the_exporter_translation() -> None:
    assert semconv.OPERATION_DURATION.prometheus_name == "gen_ai_client_operation_duration_seconds"
    assert semconv.TOKEN_USAGE.prometheus_name == "gen_ai_client_token_usage"
    assert semconv.COST.prometheus_name == "modelwatch_cost_usd_total"
    assert semconv.CIRCUIT_STATE.prometheus_name == "modelwatch_circuit_state"


def test_span_names() -> None:
    assert semconv.model_span_name("chat", "gpt-4o") == "chat gpt-4o"
    assert semconv.agent_span_name("agent", "planner") == "invoke_agent planner"
    assert semconv.agent_span_name("tool", "web_search") == "execute_tool web_search"
    assert semconv.route_span_name("summarize") == "route summarize"


def test_error_kinds_are_the_fixed_set() -> None:
    assert semconv.ERROR_KINDS == (
        "rate_limited",
        "timeout",
        "unavailable",
        "auth",
        "not_found",
        "bad_request",
        "cancelled",
        "_OTHER",
    )


def test_metric_attribute_keys_are_allow_listed() -> None:
    for metric in semconv.METRICS:
        assert set(metric.attributes) <= semconv.METRIC_ATTRIBUTE_ALLOWLIST, metric.name


def test_all_is_sorted_complete_and_documented() -> None:
    names = modelwatch.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(modelwatch, name), name
    public = {n for n in dir(modelwatch) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(modelwatch, n))}
    assert public - modules - set(names) == set(), "public names missing from __all__"
    for name in names:
        obj = getattr(modelwatch, name)
        if callable(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_design_names_exist() -> None:
    for name in (
        "configure",
        "flush",
        "shutdown",
        "monitored",
        "current_call",
        "Call",
        "agent_step",
        "ConfigurationError",
        "CircuitOpenError",
        "AllBackendsFailedError",
        "ModelwatchError",
    ):
        assert name in modelwatch.__all__, name
