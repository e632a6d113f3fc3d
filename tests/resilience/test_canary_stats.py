"""The canary's statistics: exact binomial tails, incident robustness, margins, floors."""

from __future__ import annotations

import math
import random

import pytest

from modelwatch.resilience import _canary_stats as stats


def _sample(calls: int, errors: int, latencies: list[float] | None = None) -> stats.Sample:
    s = stats.Sample(calls=calls, errors=errors)
    s.latencies.extend(latencies or [])
    return s


def test_binomial_upper_tail_matches_a_direct_sum() -> None:
    n, p, k = 40, 0.1, 9
    tail = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    z = stats._binomial_upper_z(k, n, p)
    assert stats._NORMAL.cdf(-z) == pytest.approx(tail, rel=1e-9)
    assert stats._binomial_upper_z(0, 10, 0.5) == 0.0
    assert stats._binomial_upper_z(3, 0, 0.5) == 0.0


def test_an_incident_on_both_versions_is_not_an_error_regression() -> None:
    """10 % of calls on the candidate, errors in the same proportion: a big burst of them
    (an incident) does not make the candidate look worse."""
    cand, stable = _sample(300, 30), _sample(2700, 270)
    assert not stats.error_ratio(cand, stable, 1.5, 3.5).regressed


def test_twice_the_errors_with_enough_calls_is_a_regression_and_small_samples_are_not() -> None:
    assert stats.error_ratio(_sample(2000, 80), _sample(18000, 360), 1.5, 3.5).regressed
    assert not stats.error_ratio(_sample(20, 2), _sample(180, 4), 1.5, 3.5).regressed


def test_non_inferiority_needs_evidence() -> None:
    assert not stats.error_non_inferior(_sample(50, 1), _sample(450, 9), 1.5, 3.5)
    assert stats.error_non_inferior(_sample(5000, 100), _sample(45000, 900), 1.5, 3.5)


def test_latency_needs_both_the_margin_and_the_test() -> None:
    rng = random.Random(1)
    base = [rng.lognormvariate(0, 0.5) for _ in range(2000)]
    same = [rng.lognormvariate(0, 0.5) for _ in range(300)]
    slow = [x * 1.5 for x in (rng.lognormvariate(0, 0.5) for _ in range(300))]
    stable = _sample(2000, 0, base)
    assert not stats.latency(_sample(300, 0, same), stable, 1.2, 3.5).regressed
    verdict = stats.latency(_sample(300, 0, slow), stable, 1.2, 3.5)
    assert verdict.regressed
    assert verdict.candidate > 1.2 * verdict.stable


def test_a_uniformly_slower_candidate_with_a_large_share_is_caught() -> None:
    """(Found by the demo) weight 0.3, every candidate call 0.48 s against 0.004 s: the
    pooled p95 would sit among the candidate's calls; the stable p95 does not."""
    rng = random.Random(2)
    stable = _sample(400, 0, [rng.uniform(0.003, 0.005) for _ in range(400)])
    cand = _sample(170, 0, [0.48] * 170)
    assert stats.latency(cand, stable, 1.2, 3.5).regressed


def test_no_errors_in_a_few_calls_is_not_an_error_regression() -> None:
    """(Found by the demo) 0 errors in 6 calls against 0 in 220 is no evidence of anything."""
    assert not stats.error_ratio(_sample(6, 0), _sample(220, 0), 1.5, 0.5).regressed
    assert not stats.error_ratio(_sample(20, 0), _sample(400, 0), 1.5, 0.5).regressed
