"""Measured, not claimed: how well the default canary and drift settings catch regressions.

A seeded simulation of realistic traffic through the real decision code (the canary
controller of :mod:`modelwatch.resilience.canary`, :class:`modelwatch.Drift`), with simulated
time (no sleeping, no wall clock):

- traffic: ``--rate`` calls a second (default 0.5: ~43 k calls a simulated day), the
  candidate taking its ``Canary.weight`` share; latency log-normal (median 1.2 s, sigma 0.5);
  errors 2 % on both versions, plus provider incidents that hit both (a 10-minute window
  with 15 % errors about twice a day); quality feedback on 30 % of calls, Beta-distributed
  with mean 0.8; cost from log-normal token counts.
- injected regressions on the candidate from its first call: error ratio x2, latency +50 %,
  quality -0.1; and clean runs with the same noise.
- drift: a stream of inputs (token counts and languages), a drift of token length x1.25
  and a shifted language mix injected at observation 5000, or none.

It reports the detection rate, false rollbacks (and false drift alarms) per 100 clean
simulated days, and the time to detection (candidate calls and simulated seconds; for the
canary, detection *is* the rollback: the controller rolls back in the same step).

    python benchmarks/bench_regressions.py                # the default settings, 100 runs each
    python benchmarks/bench_regressions.py --runs 300 --json results/regressions.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from structlog.testing import capture_logs

from modelwatch import Backend, Canary, Drift
from modelwatch._clock import ManualClock
from modelwatch.resilience.canary import CanaryController

DAY_S = 86_400.0
BASE_ERROR = 0.02
LATENCY_MEDIAN_S = 1.2
LATENCY_SIGMA = 0.5
QUALITY_MEAN = 0.8
QUALITY_KAPPA = 20.0  # Beta concentration: sd ~0.087
FEEDBACK_SHARE = 0.3
INCIDENTS_PER_DAY = 2.0
INCIDENT_S = 600.0
INCIDENT_ERROR = 0.15
PRICE_PER_TOKEN = 2e-6

SCENARIOS = ("clean", "error_ratio_x2", "latency_+50%", "quality_-0.1")


class _Member:
    """What the controller needs of a router member."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.spec = object()
        self._specs: list[object] = []


class _Usage:
    def __init__(self, tokens: int) -> None:
        self.usage = {"input_tokens": tokens, "output_tokens": tokens // 8}


@dataclass
class Run:
    scenario: str
    detected: bool
    reason: str | None
    candidate_calls: int
    seconds: float | None
    promoted: bool


@dataclass
class Summary:
    scenario: str
    runs: list[Run] = field(default_factory=list)

    def as_dict(self, days: float) -> dict[str, Any]:
        detected = [r for r in self.runs if r.detected]
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "runs": len(self.runs),
            "rolled_back": len(detected),
            "promoted": sum(r.promoted for r in self.runs),
        }
        if self.scenario == "clean":
            out["false_rollbacks_per_100_days"] = round(
                100 * len(detected) / (len(self.runs) * days), 3
            )
        else:
            out["detection_rate"] = round(len(detected) / len(self.runs), 4)
        if detected:
            out["reasons"] = {
                k: sum(r.reason == k for r in detected) for k in {r.reason for r in detected}
            }
        if detected:
            calls = sorted(r.candidate_calls for r in detected)
            secs = sorted(r.seconds or 0.0 for r in detected)
            out["calls_to_rollback_median"] = statistics.median(calls)
            out["calls_to_rollback_p95"] = calls[
                min(len(calls) - 1, math.ceil(0.95 * len(calls)) - 1)
            ]
            out["hours_to_rollback_median"] = round(statistics.median(secs) / 3600, 2)
            out["hours_to_rollback_p95"] = round(
                secs[min(len(secs) - 1, math.ceil(0.95 * len(secs)) - 1)] / 3600, 2
            )
        return out


def _incidents(rng: random.Random, horizon_s: float) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    t = 0.0
    while True:
        t += rng.expovariate(INCIDENTS_PER_DAY / DAY_S)
        if t >= horizon_s:
            return out
        out.append((t, t + INCIDENT_S))


def simulate_canary(scenario: str, seed: int, canary: Canary, rate: float, horizon_s: float) -> Run:
    """One candidate version's life, from deployment to rollback, promotion or horizon."""
    rng = random.Random(seed)
    clock = ManualClock()
    stable: Any = _Member(Backend(lambda: None, model="sim-1", provider="sim", version="v1"))
    cand: Any = _Member(
        Backend(
            lambda: None, model="sim-2", provider="sim", version="v2", name="sim-2", canary=canary
        )
    )
    controller = CanaryController(
        "sim",
        [stable, cand],
        clock,
        rng=random.Random(seed + 1),
    )
    incidents = _incidents(rng, horizon_s)
    t = 0.0
    error_x = 2.0 if scenario == "error_ratio_x2" else 1.0
    latency_x = 1.5 if scenario == "latency_+50%" else 1.0
    quality_shift = -0.1 if scenario == "quality_-0.1" else 0.0
    mu = math.log(LATENCY_MEDIAN_S)
    while t < horizon_s and controller.state == "canary":
        t += rng.expovariate(rate)
        clock.advance(t - clock.monotonic())
        member = controller.order([stable, cand])[0]
        is_cand = member is cand
        p_err = BASE_ERROR
        if any(a <= t < b for a, b in incidents):
            p_err = INCIDENT_ERROR
        if is_cand:
            p_err *= error_x
        if rng.random() < p_err:
            controller.observe(member, False, None, 0.0, "unavailable")
            continue
        latency = rng.lognormvariate(mu, LATENCY_SIGMA) * (latency_x if is_cand else 1.0)
        tokens = int(rng.lognormvariate(math.log(600), 0.6))
        controller.observe(member, True, _Usage(tokens), latency, None)
        if rng.random() < FEEDBACK_SHARE:
            mean = QUALITY_MEAN + (quality_shift if is_cand else 0.0)
            score = rng.betavariate(mean * QUALITY_KAPPA, (1 - mean) * QUALITY_KAPPA)
            controller.on_quality(score, member)
    status = controller.status()
    rolled = status.state == "rolled_back"
    return Run(
        scenario,
        rolled,
        status.last_reason if rolled else None,
        controller.samples[id(cand)].calls,
        t if rolled else None,
        status.state == "promoted",
    )


def simulate_drift(drifted: bool, seed: int, observations: int) -> tuple[bool, int | None]:
    """(alarm raised, observations after the injection until it was)."""
    rng = random.Random(seed)
    inject_at = 5000
    langs = ["python", "go", "rust", "java", "typescript"]
    with Drift(
        f"bench-{seed}-{drifted}",
        features={"input_tokens": "numeric", "language": "categorical"},
        window=1000,
    ) as drift:
        for i in range(observations):
            shifted = drifted and i >= inject_at
            tokens = rng.lognormvariate(math.log(600) + (math.log(1.25) if shifted else 0.0), 0.6)
            weights = [2, 2, 3, 3, 1] if shifted else [4, 2, 2, 1, 1]
            drift.observe(input_tokens=int(tokens), language=rng.choices(langs, weights)[0])
            if i % 100 == 99 and any(drift.drifted().values()):
                return True, (i - inject_at if drifted else i)
    return False, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="runs per scenario")
    parser.add_argument("--rate", type=float, default=0.5, help="calls per simulated second")
    parser.add_argument("--days", type=float, default=1.0, help="simulated days per run")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--no-promotion",
        action="store_true",
        help="never promote: clean runs are tested for the whole horizon (the strict FP rate)",
    )
    parser.add_argument("--z", type=float, help="override Canary.z (tuning)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--no-drift", action="store_true", help="skip the drift runs")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {} if args.z is None else {"z": args.z}
    if args.no_promotion:
        overrides["promote_after"] = 0
    canary = Canary(**overrides)
    horizon = args.days * DAY_S
    results: dict[str, Any] = {
        "settings": {
            "canary": {k: getattr(canary, k) for k in canary.__dataclass_fields__},
            "rate_per_s": args.rate,
            "days_per_run": args.days,
            "runs_per_scenario": args.runs,
        },
        "canary": [],
    }
    started = time.perf_counter()
    with capture_logs():
        for scenario in args.scenarios.split(","):
            summary = Summary(scenario)
            for seed in range(args.runs):
                summary.runs.append(simulate_canary(scenario, seed, canary, args.rate, horizon))
            row = summary.as_dict(args.days)
            results["canary"].append(row)
            print(json.dumps(row), flush=True)
        drift_rows = {}
        for drifted in () if args.no_drift else (False, True):
            outcomes = [simulate_drift(drifted, seed, 20_000) for seed in range(args.runs)]
            hits = [n for ok, n in outcomes if ok and n is not None]
            drift_rows["drifted" if drifted else "clean"] = {
                "runs": len(outcomes),
                "alarms": len(hits),
                "observations_to_alarm_median": statistics.median(hits) if hits else None,
                "observations_to_alarm_max": max(hits) if hits else None,
            }
        if drift_rows:
            results["drift"] = drift_rows
            print(json.dumps(drift_rows), flush=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
