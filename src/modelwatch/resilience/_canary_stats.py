"""The statistics behind a canary decision: per-version samples and one-sided tests.

Each test asks "is the candidate worse than the stable version by more than the allowed
margin, beyond noise?" and answers with the figures that decided it. Both conditions must
hold: the observed effect is past the margin (``ratio > max_ratio``, ``drop > max_drop``),
and a one-sided z statistic of the difference is past ``z`` (3.5 by default: checked every
:attr:`Canary.check_every` calls, so the boundary is stricter than a single test's 1.64; the
benchmark in ``benchmarks/bench_regressions.py`` measures what this costs in detection time
and buys in false rollbacks). The z statistics are normal approximations, fine at the
minimum sample sizes required (hundreds of calls); written by hand because they are four
lines each and no dependency of the core install has them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Final

_NORMAL: Final = NormalDist()
#: samples kept per version for latency, cost and quality (the most recent ones)
SAMPLE_CAP: Final = 5000


@dataclass
class Sample:
    """What one version did since the canary (re)started."""

    calls: int = 0
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLE_CAP))
    costs: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLE_CAP))
    scores: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLE_CAP))

    @property
    def error_rate(self) -> float:
        """Errors per call (0 before the first call)."""
        return self.errors / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class Verdict:
    """One signal's comparison: regressed or not, with the numbers behind it."""

    signal: str
    regressed: bool
    candidate: float
    stable: float
    z: float
    n_candidate: int
    n_stable: int

    def figures(self) -> dict[str, float | int | str]:
        """The verdict as log and span-event fields."""
        return {
            "signal": self.signal,
            "candidate_value": round(self.candidate, 6),
            "stable_value": round(self.stable, 6),
            "z": round(self.z, 3),
            "n_candidate": self.n_candidate,
            "n_stable": self.n_stable,
        }


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (nearest rank)."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def error_ratio(cand: Sample, stable: Sample, max_ratio: float, z_crit: float) -> Verdict:
    """Candidate error rate above ``max_ratio`` x the stable one's (Laplace-smoothed),
    and more of the errors on the candidate than its share of the calls explains.

    The test conditions on the total number of errors: calls are split at random, so under
    "no difference" the candidate's errors are Binomial(errors, its share of calls) *whatever
    the error rate did over time* (a provider incident hitting both versions does not look
    like a regression). The exact upper tail is turned into a z score."""
    p1 = cand.error_rate  # raw: a prior would make 0 errors in 6 calls look like 1 in 8
    p2 = (stable.errors + 1) / (stable.calls + 2)  # smoothed: no division by a zero rate
    total = cand.errors + stable.errors
    share = cand.calls / max(cand.calls + stable.calls, 1)
    z = _binomial_upper_z(cand.errors, total, share)
    regressed = z > z_crit and p1 > max_ratio * p2
    return Verdict("error_ratio", regressed, p1, p2, z, cand.calls, stable.calls)


def _binomial_upper_z(k: int, n: int, p: float) -> float:
    """The z score of ``P(X >= k)`` for ``X ~ Binomial(n, p)`` (exact, in log space)."""
    if n == 0 or k == 0 or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    logs = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * log_p
        + (n - i) * log_q
        for i in range(k, n + 1)
    ]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(x - top) for x in logs)
    if tail >= 0.5:
        return 0.0
    return -_NORMAL.inv_cdf(max(tail, 1e-300))


#: the non-inferiority margin is at least this many errors per call above the stable rate
#: (``max_ratio`` x a rate near 0 is no margin at all)
MIN_ERROR_MARGIN: Final = 0.01


def error_non_inferior(cand: Sample, stable: Sample, max_ratio: float, z_crit: float) -> bool:
    """Is the candidate's error rate shown to be under the margin, ``max_ratio`` x the
    stable one's (at least :data:`MIN_ERROR_MARGIN` above it), by a one-sided z test past
    ``z_crit``? The promotion gate: with errors this rare, an absence of evidence of a
    regression is not evidence of its absence."""
    p1 = (cand.errors + 1) / (cand.calls + 2)
    p2 = (stable.errors + 1) / (stable.calls + 2)
    ratio = max(max_ratio, (p2 + MIN_ERROR_MARGIN) / p2)
    var = p1 * (1 - p1) / max(cand.calls, 1) + ratio**2 * p2 * (1 - p2) / max(stable.calls, 1)
    return var > 0 and (ratio * p2 - p1) / math.sqrt(var) > z_crit


def latency(
    cand: Sample, stable: Sample, max_ratio: float, z_crit: float, q: float = 0.95
) -> Verdict:
    """Candidate p95 above ``max_ratio`` x the stable p95, tested by the share of each
    version's calls slower than the *stable* p95 (a two-proportion z test: about ``1 - q`` of
    the stable calls are, and both samples' noise counts). The stable p95, not the pooled
    one: with a large candidate weight the pooled p95 falls among the candidate's own calls
    and hides a uniform slowdown."""
    ref = sorted(stable.latencies)
    mine = sorted(cand.latencies)
    if len(ref) < 2 or len(mine) < 2:
        return Verdict("latency_p95", False, 0.0, 0.0, 0.0, len(mine), len(ref))
    p95_stable, p95_cand = quantile(ref, q), quantile(mine, q)
    k1 = len(mine) - _count_at_most(mine, p95_stable)
    k2 = len(ref) - _count_at_most(ref, p95_stable)
    z = _two_proportion_z(k1, len(mine), k2, len(ref))
    regressed = z > z_crit and p95_cand > max_ratio * p95_stable
    return Verdict("latency_p95", regressed, p95_cand, p95_stable, z, len(mine), len(ref))


def _two_proportion_z(k1: int, n1: int, k2: int, n2: int) -> float:
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return (k1 / n1 - k2 / n2) / se if se > 0 else 0.0


def _count_at_most(sorted_values: list[float], limit: float) -> int:
    lo, hi = 0, len(sorted_values)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_values[mid] <= limit:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _mean_var(values: deque[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / max(n - 1, 1)
    return mean, var


def _welch_z(a: deque[float], b: deque[float]) -> tuple[float, float, float]:
    """``(mean a, mean b, z of a - b)`` (normal approximation of Welch's t)."""
    ma, va = _mean_var(a)
    mb, vb = _mean_var(b)
    se = math.sqrt(va / len(a) + vb / len(b))
    if se == 0:
        return ma, mb, math.copysign(math.inf, ma - mb) if ma != mb else 0.0
    return ma, mb, (ma - mb) / se


def quality(
    cand: Sample, stable: Sample, max_drop: float, min_score: float | None, z_crit: float
) -> Verdict:
    """Candidate mean score lower than the stable one by more than ``max_drop`` (one-sided
    Welch z), or below the ``min_score`` floor beyond noise."""
    if len(cand.scores) < 2 or len(stable.scores) < 2:
        return Verdict("quality", False, 0.0, 0.0, 0.0, len(cand.scores), len(stable.scores))
    m_stable, m_cand, z = _welch_z(stable.scores, cand.scores)  # z > 0: the candidate is lower
    n_cand, n_stable = len(cand.scores), len(stable.scores)
    regressed = z > z_crit and m_stable - m_cand > max_drop
    if min_score is not None and not regressed:
        _, var = _mean_var(cand.scores)
        se = math.sqrt(var / n_cand)
        z_floor = (min_score - m_cand) / se if se > 0 else (math.inf if m_cand < min_score else 0.0)
        if z_floor > z_crit:
            return Verdict("quality_floor", True, m_cand, min_score, z_floor, n_cand, 0)
    return Verdict("quality", regressed, m_cand, m_stable, z, n_cand, n_stable)


def cost(cand: Sample, stable: Sample, max_ratio: float, z_crit: float) -> Verdict:
    """Candidate mean cost per call above ``max_ratio`` x the stable one (one-sided Welch z)."""
    if len(cand.costs) < 2 or len(stable.costs) < 2:
        return Verdict("cost", False, 0.0, 0.0, 0.0, len(cand.costs), len(stable.costs))
    mc, ms, z = _welch_z(cand.costs, stable.costs)
    regressed = z > z_crit and mc > max_ratio * ms
    return Verdict("cost", regressed, mc, ms, z, len(cand.costs), len(stable.costs))
