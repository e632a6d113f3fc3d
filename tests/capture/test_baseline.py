"""Learned baselines: anomaly scores stay low on steady traffic, rise on a latency or error
regression, follow the hour of day, and can steer a router (opt-in)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from modelwatch import semconv
from modelwatch._clock import ManualClock
from modelwatch.capture import baseline
from modelwatch.capture.baseline import AvoidAnomalous, anomaly_scores, record_end
from modelwatch.testing import capture

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 86400  # midnight UTC


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    clock = ManualClock(wall_start=T0)
    baseline.set_clock(clock)
    baseline.drain()
    baseline._baselines.clear()
    yield clock
    baseline.set_clock(baseline.SYSTEM_CLOCK)
    baseline.drain()
    baseline._baselines.clear()


def _minutes(
    clock: ManualClock,
    rng: random.Random,
    minutes: int,
    *,
    model: str = "m",
    latency: float = 1.0,
    error_rate: float = 0.02,
    per_minute: int = 30,
) -> None:
    for _ in range(minutes):
        for _ in range(per_minute):
            failed = rng.random() < error_rate
            kind = semconv.ERROR_UNAVAILABLE if failed else None
            record_end(model, "review", kind, rng.lognormvariate(0, 0.2) * latency, 10, 10)
            clock.advance(60.0 / per_minute)
        baseline.drain()


def test_no_score_without_history(clock: ManualClock) -> None:
    _minutes(clock, random.Random(1), 10)
    assert anomaly_scores()[("m", "review")] == {}


def test_steady_traffic_scores_low_and_regressions_score_high(clock: ManualClock) -> None:
    rng = random.Random(2)
    _minutes(clock, rng, 120)
    steady = anomaly_scores()[("m", "review")]
    assert abs(steady["latency"]) < 3
    assert abs(steady["error_rate"]) < 4  # rare events: a heavier tail than normal
    _minutes(clock, rng, 5, latency=1.5)
    assert anomaly_scores()[("m", "review")]["latency"] > 4
    _minutes(clock, rng, 60)
    _minutes(clock, rng, 5, error_rate=0.2)
    assert anomaly_scores()[("m", "review")]["error_rate"] > 4


def test_hour_of_day_seasonality(clock: ManualClock) -> None:
    """Slow every day from 12:00 to 13:00: after three days that hour is the norm."""
    rng = random.Random(3)
    for _day in range(4):
        _minutes(clock, rng, 12 * 60, per_minute=4)
        _minutes(clock, rng, 60, latency=2.0, per_minute=4)
        _minutes(clock, rng, 11 * 60, per_minute=4)
    _minutes(clock, rng, 12 * 60 + 10, per_minute=4)
    _minutes(clock, rng, 10, latency=2.0, per_minute=4)  # day 5, 12:10: slow, as every day
    assert anomaly_scores()[("m", "review")]["latency"] < 3


def test_the_gauge_and_excluded_kinds(clock: ManualClock) -> None:
    rng = random.Random(4)
    _minutes(clock, rng, 60)
    for _ in range(100):  # 429s are not errors of the model's own (errorkinds table)
        record_end("m", "review", semconv.ERROR_RATE_LIMITED, 0.1, None, None)
    with capture() as cap:
        points = cap.metric_points(semconv.ANOMALY_SCORE.name, {semconv.GEN_AI_REQUEST_MODEL: "m"})
        signals = {p.attributes[semconv.ANOMALY_SIGNAL]: p.value for p in points}
    assert set(signals) == {"latency", "error_rate"}
    assert abs(signals["error_rate"]) < 4


def test_avoid_anomalous_moves_an_anomalous_backend_last(clock: ManualClock) -> None:
    rng = random.Random(5)
    _minutes(clock, rng, 60, model="slow")
    _minutes(clock, rng, 60, model="fine")
    _minutes(clock, rng, 5, model="slow", latency=3.0)

    class B:
        def __init__(self, model: str) -> None:
            self.model = model

    class C:
        def __init__(self, model: str) -> None:
            self.backend = B(model)
            self.latency_s = None

    order = AvoidAnomalous(threshold=4.0)
    ordered = order([C("slow"), C("fine")])  # type: ignore[list-item]
    assert [c.backend.model for c in ordered] == ["fine", "slow"]
