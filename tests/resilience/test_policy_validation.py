"""Bad policy values fail at construction with a ConfigurationError naming the field."""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any

import pytest

from modelwatch.errors import ConfigurationError
from modelwatch.resilience.circuit import circuit, get_breaker, reset_circuits
from modelwatch.resilience.policy import BreakerPolicy, RetryPolicy

BREAKER_NUMBERS = [
    f.name
    for f in dataclasses.fields(BreakerPolicy)
    if f.type in ("int", "float") or isinstance(f.default, (int, float))
]
circuit_module = importlib.import_module("modelwatch.resilience.circuit")
RETRY_NUMBERS = [
    f.name
    for f in dataclasses.fields(RetryPolicy)
    if isinstance(f.default, (int, float)) and not isinstance(f.default, bool)
]


def test_every_numeric_field_is_covered() -> None:
    assert {"window_s", "open_s", "failure_ratio", "jitter", "sync_interval_s"} <= set(
        BREAKER_NUMBERS
    )
    assert {"max_retries", "backoff_s", "budget_ratio"} <= set(RETRY_NUMBERS)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", BREAKER_NUMBERS)
def test_nan_and_infinity_in_breaker_policy_name_the_field(field: str, bad: float) -> None:
    with pytest.raises(ConfigurationError, match=rf"BreakerPolicy\.{field}\b"):
        BreakerPolicy(**{field: bad})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", RETRY_NUMBERS)
def test_nan_and_infinity_in_retry_policy_name_the_field(field: str, bad: float) -> None:
    with pytest.raises(ConfigurationError, match=rf"RetryPolicy\.{field}\b"):
        RetryPolicy(**{field: bad})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ignore": "rate_limited"}, "ignore"),  # a string would be read letter by letter
        ({"ignore": {"rate_limited", "nope"}}, "ignore"),
        ({"ignore": None}, "ignore"),
        ({"storage": "x"}, "storage"),
        ({"window_s": "30"}, "window_s"),
        ({"consecutive_failures": True}, "consecutive_failures"),
        ({"consecutive_failures": 2.5}, "consecutive_failures"),
    ],
)
def test_wrong_types_in_breaker_policy_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"BreakerPolicy\.{field}\b"):
        BreakerPolicy(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"retry_kinds": "timeout"}, "retry_kinds"),
        ({"retry_kinds": {"nope"}}, "retry_kinds"),
        ({"max_retries": True}, "max_retries"),
        ({"backoff_s": "1"}, "backoff_s"),
        ({"failover_on_other": "yes"}, "failover_on_other"),
    ],
)
def test_wrong_types_in_retry_policy_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"RetryPolicy\.{field}\b"):
        RetryPolicy(**kwargs)


def test_ignore_accepts_any_collection_of_known_kinds() -> None:
    assert BreakerPolicy(ignore=["timeout"]).ignore == frozenset({"timeout"})


@pytest.mark.parametrize("name", ["", "   ", 5, None])
def test_circuit_needs_a_name(name: Any) -> None:
    with pytest.raises(ConfigurationError, match="name"):
        circuit(name)


def test_circuit_with_a_policy_that_is_not_one_is_loud() -> None:
    with pytest.raises(ConfigurationError, match="policy"):
        circuit("typed", {"open_s": 5})  # type: ignore[arg-type]


def test_circuit_again_with_another_policy_is_loud() -> None:
    circuit("twice", BreakerPolicy(open_s=5.0))
    assert circuit("twice").breaker.policy.open_s == 5.0
    with pytest.raises(ConfigurationError, match="twice"):
        circuit("twice", BreakerPolicy(open_s=6.0))


def test_circuit_names_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    reset_circuits()
    monkeypatch.setattr(circuit_module._names, "limit", 3)
    try:
        kept = [get_breaker(f"tenant-{i}") for i in range(3)]
        extra = [get_breaker(f"tenant-{i}") for i in range(3, 10)]
        assert len({id(b) for b in kept}) == 3
        assert len({id(b) for b in extra}) == 1  # one overflow breaker for the rest
        assert extra[0].metric_attributes == {"otel.metric.overflow": True}
        assert get_breaker("tenant-1") is kept[1]
    finally:
        reset_circuits()
