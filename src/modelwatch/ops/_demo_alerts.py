"""Which of the generated alert rules would have fired during the demo.

The rules are the ones ``modelwatch rules`` generates (:func:`modelwatch.ops.rules.build_alerts`),
built with :class:`~modelwatch.ops.rules.RuleOptions` whose windows and ``for`` durations
are scaled to the demo's compressed timeline (one run stands for an hour of production, so a
60 s run divides every window by 60: ``5m`` becomes ``5s``), and with latency and hung-call
thresholds fitted to the demo's timeouts. Each rule's condition is then evaluated, every
quarter second of the run, on what the demo itself recorded (the routed model calls of users
and of the synthetic health checks, which are what the telemetry counts; circuit and
health samples) — not on Prometheus, which the demo does not run. A rule "fired" when its
condition held for the rule's (scaled) ``for``.

Rules the demo cannot evaluate honestly (budgets it does not set, a regression against
yesterday) are listed as not evaluated, with the reason.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal

from modelwatch import semconv
from modelwatch.ops._demo_record import AttemptRecord, Recorder, StateSample, percentile
from modelwatch.ops.rules import AlertRule, BurnWindow, RuleOptions, build_alerts

__all__ = ["TICK_S", "Verdict", "demo_rule_options", "evaluate"]

#: Error kinds the router fails over on (the rest surface to the caller).
_FAILED_OVER: Final = frozenset(
    {
        semconv.ERROR_RATE_LIMITED,
        semconv.ERROR_TIMEOUT,
        semconv.ERROR_UNAVAILABLE,
        semconv.ERROR_AUTH,
        semconv.ERROR_NOT_FOUND,
    }
)

#: How often conditions are evaluated, demo seconds.
TICK_S: Final = 0.25

Outcome = Literal["fired", "quiet", "not evaluated"]
# subject (a model, a router, a check...) -> condition holds at this tick, and the value
Condition = Callable[[float], dict[str, tuple[bool, str]]]


@dataclass(frozen=True)
class Verdict:
    """What one generated alert would have done during the demo."""

    name: str
    severity: str
    outcome: Outcome
    #: for fired alerts: each subject that fired, with when and the value that did it
    fired: tuple[tuple[str, float, str], ...] = ()
    #: for quiet and not-evaluated alerts: why
    note: str = ""


def demo_rule_options(duration: float, *, latency_threshold_s: float, hung_s: float) -> RuleOptions:
    """Rule options for a run of ``duration`` seconds standing for one hour of production."""
    base = RuleOptions(latency_threshold_s=latency_threshold_s, hung_call_threshold_s=hung_s)
    return base.scaled(3600.0 / duration)


class _Data:
    """The recorded run, indexed for window queries."""

    def __init__(self, recorder: Recorder) -> None:
        self.attempts = sorted(recorder.attempts("user", "health"), key=lambda a: a.end)
        self.attempt_ends = [a.end for a in self.attempts]
        self.requests = sorted(recorder.requests(), key=lambda r: r.end)
        self.samples = recorder.samples()
        self.sample_times = [s.at for s in self.samples]
        self.models = sorted({a.model for a in self.attempts})
        #: (analysis, model) of every primary: a user attempt failing there is failed over
        self.primaries = {(r.analysis, r.primary) for r in self.requests}

    def attempts_in(self, start: float, end: float) -> dict[str, list[AttemptRecord]]:
        """Attempts that ended in ``(start, end]``, by model."""
        out: dict[str, list[AttemptRecord]] = defaultdict(list)
        lo = bisect.bisect_right(self.attempt_ends, start)
        hi = bisect.bisect_right(self.attempt_ends, end)
        for a in self.attempts[lo:hi]:
            out[a.model].append(a)
        return out

    def sample_at(self, t: float) -> StateSample | None:
        """The last sample taken at or before ``t``."""
        index = bisect.bisect_right(self.sample_times, t)
        return self.samples[index - 1] if index else None


def _users(records: list[AttemptRecord]) -> list[AttemptRecord]:
    return [r for r in records if r.origin == "user"]


def _share(records: list[AttemptRecord], keep: Callable[[AttemptRecord], bool]) -> float | None:
    if not records:
        return None
    return sum(1 for r in records if keep(r)) / len(records)


class _Conditions:
    """Each alert's condition over the demo's records: a function of time giving, per
    subject (model, router, check...), whether the condition holds and the value seen."""

    def __init__(self, data: _Data, options: RuleOptions) -> None:
        self.data = data
        self.o = options

    def table(self) -> dict[str, Condition | str]:
        """Alert name -> its condition, or why it is not evaluated."""
        o = self.o
        no_budget = "the demo sets no cost budgets"
        return {
            "ModelwatchHighLatency": self.latency,
            "ModelwatchHungCalls": self.hung,
            "ModelwatchErrorRateHigh": self.error_rate,
            "ModelwatchAuthFailing": self.auth,
            "ModelwatchRateLimited": self.rate_limited,
            "ModelwatchRateLimitQuotaLow": self.quota,
            "ModelwatchLatencyRegression": (
                "compares with the same window a day earlier; the demo has no yesterday"
            ),
            "ModelwatchErrorBudgetBurnFast": self.burn(o.slo_fast_burn),
            "ModelwatchErrorBudgetBurnSlow": self.burn(o.slo_slow_burn),
            "ModelwatchCircuitOpen": self.circuit,
            "ModelwatchAllCircuitsOpen": self.all_open,
            "ModelwatchFailovers": self.failovers,
            "ModelwatchHealthCheckDown": self.health_down,
            "ModelwatchNotReady": self.not_ready,
            "ModelwatchBudgetNearlySpent": no_budget,
            "ModelwatchBudgetExhausted": no_budget,
            "ModelwatchBudgetForecastOverrun": no_budget,
            "ModelwatchTelemetryAbsent": self.telemetry_absent,
        }

    def latency(self, t: float) -> dict[str, tuple[bool, str]]:
        """p95 of call durations per model over the latency window."""
        o, out = self.o, {}
        for model, rows in self.data.attempts_in(t - o.latency_window_s, t).items():
            p = percentile([r.duration for r in rows], o.latency_quantile)
            if p is not None:
                out[model] = (p > o.latency_threshold_s, f"p95 {p:.2f} s")
        return out

    def hung(self, t: float) -> dict[str, tuple[bool, str]]:
        """Age of the oldest call in flight per model."""
        sample = self.data.sample_at(t)
        if sample is None:
            return {}
        return {
            m: (age > self.o.hung_call_threshold_s, f"oldest call {age:.1f} s")
            for m, age in sample.oldest_in_flight.items()
        }

    def error_rate(self, t: float) -> dict[str, tuple[bool, str]]:
        """Share of calls per model failing with each error kind (some kinds left out)."""
        o, out = self.o, {}
        ignore = set(o.error_rate_ignore_kinds)
        for model, rows in self.data.attempts_in(t - o.error_rate_window_s, t).items():
            kinds = Counter(r.error for r in rows if r.error is not None and r.error not in ignore)
            for kind, n in sorted(kinds.items()):
                share = n / len(rows)
                out[f"{model} ({kind})"] = (share > o.error_rate_threshold, f"{share:.0%} {kind}")
        return out

    def rate_limited(self, t: float) -> dict[str, tuple[bool, str]]:
        """Share of calls per model answered with 429."""
        o, out = self.o, {}
        for model, rows in self.data.attempts_in(t - o.rate_limited_window_s, t).items():
            share = sum(1 for r in rows if r.error == semconv.ERROR_RATE_LIMITED) / len(rows)
            out[model] = (share > o.rate_limited_threshold, f"{share:.0%} rate limited")
        return out

    def auth(self, t: float) -> dict[str, tuple[bool, str]]:
        """Calls per model refused with 401/403."""
        out = {}
        for model, rows in self.data.attempts_in(t - self.o.error_rate_window_s, t).items():
            n = sum(1 for r in rows if r.error == semconv.ERROR_AUTH)
            out[model] = (n > 0, f"{n} refused")
        return out

    def quota(self, t: float) -> dict[str, tuple[bool, str]]:
        """The lowest rate-limit ratio the routers saw per model."""
        sample = self.data.sample_at(t)
        if sample is None:
            return {}
        return {
            m: (ratio < self.o.quota_remaining_threshold, f"{ratio:.0%} of the quota left")
            for m, ratio in sample.rate_limits.items()
        }

    def burn(self, windows: Iterable[BurnWindow]) -> Condition:
        """Multi-window error-budget burn per model."""
        pairs = tuple(windows)
        budget = 1.0 - self.o.slo_target
        ignore = set(self.o.slo_ignore_kinds)
        data = self.data

        def failed(r: AttemptRecord) -> bool:
            # as the generated rule: a failed attempt the router failed over from was rescued
            # by the backup, so only failures nothing moved on from burn the error budget
            if r.error is None or r.error in ignore:
                return False
            rescued = (
                r.origin == "user"
                and (r.analysis, r.model) in data.primaries
                and r.error in _FAILED_OVER
            )
            return not rescued

        def condition(t: float) -> dict[str, tuple[bool, str]]:
            out: dict[str, tuple[bool, str]] = {}
            for w in pairs:
                long_rows = data.attempts_in(t - w.long_s, t)
                short_rows = data.attempts_in(t - w.short_s, t)
                for model in data.models:
                    # users' calls only: probes and health checks are not (modelwatch.origin)
                    lr = _share(_users(long_rows.get(model, [])), failed)
                    sr = _share(_users(short_rows.get(model, [])), failed)
                    if lr is None or sr is None:
                        continue
                    hit = lr > w.factor * budget and sr > w.factor * budget
                    if hit or model not in out:
                        out[model] = (hit, f"{lr:.1%} failing (budget {budget:.1%})")
            return out

        return condition

    def circuit(self, t: float) -> dict[str, tuple[bool, str]]:
        """Circuit state per backend."""
        sample = self.data.sample_at(t)
        if sample is None:
            return {}
        return {
            f"{model} in {router}": (state == "open", state)
            for (router, model), state in sample.states.items()
        }

    def all_open(self, t: float) -> dict[str, tuple[bool, str]]:
        """Whether every backend of a router is open."""
        sample = self.data.sample_at(t)
        if sample is None:
            return {}
        by_router: dict[str, list[str]] = defaultdict(list)
        for (router, _), state in sample.states.items():
            by_router[router].append(state)
        return {
            r: (all(s == "open" for s in states), f"{states.count('open')}/{len(states)} open")
            for r, states in by_router.items()
        }

    def failovers(self, t: float) -> dict[str, tuple[bool, str]]:
        """Requests moved off their primary in the failover window."""
        counts: dict[str, int] = defaultdict(int)
        for r in self.data.requests:
            if t - self.o.failover_window_s < r.end <= t and r.failed_over:
                counts[f"{r.analysis} from {r.primary}"] += 1
        return {k: (n > 0, f"{n} calls moved") for k, n in counts.items()}

    def health_down(self, t: float) -> dict[str, tuple[bool, str]]:
        """Status per health check."""
        sample = self.data.sample_at(t)
        if sample is None:
            return {}
        return {name: (status == "down", status) for name, status in sample.health.items()}

    def not_ready(self, t: float) -> dict[str, tuple[bool, str]]:
        """Whether a critical check is down (``/ready`` answers 503)."""
        sample = self.data.sample_at(t)
        if sample is None:
            return {}
        return {"engine": (not sample.ready, "/ready 200" if sample.ready else "/ready 503")}

    def telemetry_absent(self, t: float) -> dict[str, tuple[bool, str]]:
        """The demo serves its metrics for the whole run."""
        del t
        return {"engine": (False, "metrics served throughout")}


def _run(
    condition: Condition, for_s: float, end: float
) -> tuple[list[tuple[str, float, str]], dict[str, str]]:
    """Step through the run; return (subjects that fired, when, value) and each subject's
    worst value for quiet ones."""
    since: dict[str, float] = {}
    fired: dict[str, tuple[float, str]] = {}
    seen: dict[str, str] = {}
    steps = int(end / TICK_S)
    for i in range(1, steps + 1):
        t = i * TICK_S
        holding = condition(t)
        for subject, (hit, value) in holding.items():
            seen.setdefault(subject, value)
            if not hit:
                since.pop(subject, None)
                continue
            seen[subject] = value
            start = since.setdefault(subject, t)
            if subject not in fired and t - start >= for_s:
                fired[subject] = (t, value)
        for subject in list(since):
            if subject not in holding:
                since.pop(subject)
    return [(s, at, v) for s, (at, v) in sorted(fired.items(), key=lambda x: x[1][0])], seen


def evaluate(recorder: Recorder, options: RuleOptions, end: float) -> list[Verdict]:
    """Every generated alert's verdict over the first ``end`` seconds of the run: fired
    ones first (in firing order), then quiet ones, then those not evaluated."""
    data = _Data(recorder)
    conditions = _Conditions(data, options).table()
    verdicts = []
    rules: list[AlertRule] = build_alerts(options)
    for rule in rules:
        condition = conditions.get(rule.name)
        if condition is None:
            verdicts.append(
                Verdict(rule.name, rule.severity, "not evaluated", note="new rule: no evaluator")
            )
            continue
        if isinstance(condition, str):
            verdicts.append(Verdict(rule.name, rule.severity, "not evaluated", note=condition))
            continue
        fired, seen = _run(condition, rule.for_s, end)
        if fired:
            verdicts.append(Verdict(rule.name, rule.severity, "fired", tuple(fired)))
        else:
            note = "; ".join(f"{s}: {v}" for s, v in list(seen.items())[:2]) or "no data"
            verdicts.append(Verdict(rule.name, rule.severity, "quiet", note=note))
    order = {"fired": 0, "quiet": 1, "not evaluated": 2}
    return sorted(
        verdicts,
        key=lambda v: (order[v.outcome], v.fired[0][1] if v.fired else 0.0),
    )
