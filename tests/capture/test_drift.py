"""Drift: detected on injected drift, not on resampled reference data (seeded); fed by
monitored calls; exported; validated."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

import modelwatch
from modelwatch import ConfigurationError, semconv
from modelwatch.capture.drift import psi
from modelwatch.testing import capture

LANGS = ["python", "go", "rust", "java"]


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture
def drift() -> Iterator[modelwatch.Drift]:
    d = modelwatch.Drift(
        "review-inputs",
        features={"input_tokens": "numeric", "language": "categorical"},
        window=500,
    )
    yield d
    d.close()


def _traffic(rng: random.Random, n: int, mean: float = 800.0, weights: list[float] | None = None):
    for _ in range(n):
        yield {
            "input_tokens": max(1, int(rng.lognormvariate(0, 0.4) * mean)),
            "language": rng.choices(LANGS, weights or [5, 3, 1, 1])[0],
        }


def test_resampled_reference_data_does_not_drift(
    drift: modelwatch.Drift, rng: random.Random
) -> None:
    for seed in range(20):
        local = random.Random(seed)
        d = modelwatch.Drift(
            f"clean-{seed}", features={"input_tokens": "numeric", "language": "categorical"},
            window=500,
        )  # fmt: skip
        try:
            for obs in _traffic(local, 2000):
                d.observe(**obs)
            scores = d.score()
            assert set(scores) == {"input_tokens", "language"}
            assert max(scores.values()) < 0.1, (seed, scores)
            assert not any(d.drifted().values())
        finally:
            d.close()


def test_injected_numeric_and_categorical_drift_is_detected(
    drift: modelwatch.Drift, rng: random.Random
) -> None:
    for obs in _traffic(rng, 500):  # the reference
        drift.observe(**obs)
    for obs in _traffic(rng, 500, mean=1400.0, weights=[1, 1, 3, 5]):
        drift.observe(**obs)
    scores = drift.score()
    assert scores["input_tokens"] > 0.2
    assert scores["language"] > 0.2
    assert drift.drifted() == {"input_tokens": True, "language": True}


def test_a_given_reference_and_the_ks_statistic(rng: random.Random) -> None:
    pytest.importorskip("scipy")
    reference = {"latency_s": [rng.gauss(1.0, 0.1) for _ in range(1000)]}
    with modelwatch.Drift("lat", features={"latency_s": "numeric"}, reference=reference) as d:
        for _ in range(1000):
            d.observe(latency_s=rng.gauss(1.2, 0.1))
        statistic, p = d.ks()["latency_s"]
        assert statistic > 0.5
        assert p < 1e-6
        assert d.score()["latency_s"] > 0.2


def test_unseen_categories_count_under_other() -> None:
    with modelwatch.Drift("cats", features={"lang": "categorical"}, window=100) as d:
        for _ in range(100):
            d.observe(lang="python")
        for i in range(100):
            d.observe(lang=f"free text {i}")  # never a new bin per value
        assert d.score()["lang"] > 5


def test_psi_of_identical_distributions_is_zero() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.5, 0.5], [0.9, 0.1]) > 0.2


def test_monitored_calls_feed_tokens_and_latency_and_the_gauge_exports_it() -> None:
    with capture() as cap, modelwatch.Drift(
        "auto", model="m", features={"input_tokens": "numeric", "output_tokens": "numeric",
                                     "latency_s": "numeric"}, window=50,
    ) as d:  # fmt: skip
        for i in range(100):
            with modelwatch.monitored(model="m", provider="p") as call:
                call.record_usage(input_tokens=100 + i % 10, output_tokens=10)
        with modelwatch.monitored(model="other", provider="p") as call:
            call.record_usage(input_tokens=10**6, output_tokens=10)
        scores = d.score()
        assert set(scores) == {"input_tokens", "output_tokens", "latency_s"}
        assert scores["input_tokens"] < 0.1
        points = cap.metric_points(semconv.DRIFT_SCORE.name, {semconv.DRIFT: "auto"})
        assert {p.attributes[semconv.FEATURE] for p in points} == set(scores)
        assert all(p.attributes[semconv.GEN_AI_REQUEST_MODEL] == "m" for p in points)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"features": {}}, "features"),
        ({"features": {"x": "text"}}, "features"),
        ({"features": {"x": "numeric"}, "window": 5}, "window"),
        ({"features": {"x": "numeric"}, "threshold": 0}, "threshold"),
        ({"features": {"x": "numeric"}, "reference": {"y": [1]}}, "reference"),
        ({"features": {"x": "numeric"}, "reference": {"x": []}}, "reference"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(ConfigurationError, match=argument):
        modelwatch.Drift("bad", **kwargs)  # type: ignore[arg-type]


def test_unknown_feature_in_observe_raises(drift: modelwatch.Drift) -> None:
    with pytest.raises(ValueError, match="unknown"):
        drift.observe(tokens=1)


def test_names_are_unique_among_open_monitors(drift: modelwatch.Drift) -> None:
    with pytest.raises(ConfigurationError, match="already open"):
        modelwatch.Drift("review-inputs", features={"x": "numeric"})
