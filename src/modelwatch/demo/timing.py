"""The demo's timeouts, breaker, canary and drift settings, scaled to the run's duration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from modelwatch.resilience import BreakerPolicy, Canary, Hedge, RetryPolicy

__all__ = ["BUDGET_AT", "Timing"]

#: when, as a share of the run, the expensive model's budget is meant to be spent
BUDGET_AT: Final = 0.6
#: users' calls a second to the expensive model before the slow phase (measured on a 2-core
#: machine: ~6.4), to size its budget
_BUDGETED_CALLS_PER_S: Final = 6.4
#: from 40 % of the run BART is slow: the traffic workers wait on it, and the other analyses get
#: about 0.3 of their calls (measured: 2.0 against 6.4 a second)
_SLOW_FROM: Final = 0.4
_SLOWED: Final = 0.3


@dataclass(frozen=True)
class Timing:
    """Timeouts and breaker settings scaled to the run's duration, so that a 10 s run in a
    test tells the same story as the default minute. Production defaults are much longer."""

    duration: float

    @property
    def attempt_timeout_s(self) -> float:
        """Per-attempt cap: a hung model costs this much, then the call fails over."""
        return round(min(1.5, max(0.8, self.duration * 0.02)), 2)

    @property
    def client_timeout_s(self) -> float:
        """The HTTP clients' own timeout: a little past the router's, so the router's
        per-attempt timeout is what users feel, and an abandoned request still ends soon."""
        return round(self.attempt_timeout_s + 0.5, 2)

    @property
    def slow_latency_s(self) -> float:
        """Latency the slow model gains in the scenario: slow, but within the timeout."""
        return round(self.attempt_timeout_s * 0.6, 2)

    @property
    def latency_alert_s(self) -> float:
        """The p95 threshold of the latency alert the demo evaluates (production: 30 s)."""
        return round(self.attempt_timeout_s * 0.4, 2)

    @property
    def call_timeout_s(self) -> float:
        """Whole-call deadline."""
        return round(self.attempt_timeout_s * 3, 2)

    @property
    def open_s(self) -> float:
        """How long an opened breaker refuses calls before a trial."""
        return round(min(3.0, max(0.5, self.duration * 0.03)), 2)

    @property
    def max_open_s(self) -> float:
        """The longest an opened breaker stays open: each failed trial doubles the open time."""
        return self.open_s * 4

    @property
    def probe_interval_s(self) -> float:
        """How often an open breaker probes its backend in the background."""
        return round(min(1.0, max(0.25, self.duration * 0.01)), 2)

    @property
    def health_interval_s(self) -> float:
        """How often health checks probe."""
        return round(min(2.0, max(1.0, self.duration / 30)), 2)

    def breaker_policy(self) -> BreakerPolicy:
        """The demo's breaker policy (see :meth:`describe`)."""
        return BreakerPolicy(
            consecutive_failures=3,
            failure_ratio=0.5,
            min_calls=8,
            window_s=max(2.0, self.duration * 0.1),
            slow_call_s=self.attempt_timeout_s,
            open_s=self.open_s,
            max_open_s=self.max_open_s,
            backoff_factor=2.0,
            jitter=0.0,  # deterministic with --seed
            trial_lease_s=self.client_timeout_s * 2,
            close_after=2,
            probe_interval_s=self.probe_interval_s,
            probe_timeout_s=self.attempt_timeout_s,
        )

    @property
    def drift_window(self) -> int:
        """Calls in the drift monitor's reference and sliding window: about a tenth of the
        slow model's calls in the run."""
        return int(min(200, max(20, self.duration)))

    def canary(self) -> Canary:
        """The candidate's trial: 10 % of the calls (the production default), compared after
        a few calls each (default 200), rolled back for good. Soon enough to come before the
        budget on the same model runs out (:data:`BUDGET_AT`): from then on the router skips
        both versions, and the candidate would get no more calls."""
        calls = int(min(20, max(4, self.duration / 10)))
        return Canary(
            weight=0.1,
            min_calls=calls,
            # the scenario injects a latency regression: the error test is left out, so the
            # rollback shown is the one injected
            max_error_ratio=1e6,
            check_every=2,
            max_cost_ratio=None,
            promote_after=0,
            cooldown_s=None,
        )

    def hedge(self) -> Hedge:
        """Race a call whose primary has not answered after its learned p95 latency, kept
        within a quarter and a half of the attempt timeout (production: 0.05 s .. 10 s)."""
        return Hedge(
            min_after_s=round(self.attempt_timeout_s * 0.25, 2),
            max_after_s=round(self.attempt_timeout_s * 0.5, 2),
        )

    def budget_usd(self, per_call_usd: float, processes: int = 1) -> float:
        """One process' budget for a model priced ``per_call_usd`` a call, sized to be spent
        about :data:`BUDGET_AT` into the run (it stands for a day's budget in production):
        the users' calls until then (``processes`` share them), fewer once the slow phase
        holds up the traffic, and one call per health interval of the analysis' synthetic
        check (the model check's probe calls the model directly, unpriced)."""
        users = _BUDGETED_CALLS_PER_S / processes
        share = min(BUDGET_AT, _SLOW_FROM) + max(0.0, BUDGET_AT - _SLOW_FROM) * _SLOWED
        calls = (users * share + BUDGET_AT / self.health_interval_s) * self.duration
        return round(per_call_usd * calls, 4)

    def retry_policy(self) -> RetryPolicy:
        """Fail over at once; retry the same model at most once, briefly."""
        return RetryPolicy(max_retries=1, backoff_s=0.1, max_wait_s=self.attempt_timeout_s)

    def describe(self) -> str:
        """One line for the header: how the demo's settings differ from production's."""
        return (
            f"breakers tuned for a {self.duration:g} s demo: open after 3 failures in a row, "
            f"stay open {self.open_s:g} s (production default 10 s), probe every "
            f"{self.probe_interval_s:g} s (default 5 s); attempt timeout "
            f"{self.attempt_timeout_s:g} s (default 25 s)"
        )
