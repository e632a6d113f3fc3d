"""The options of the generated alert rules (:class:`RuleOptions`), in whole seconds."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from modelwatch import semconv
from modelwatch.ops._regression_options import RegressionOptions
from modelwatch.ops.durations import format_duration
from modelwatch.ops.promnames import SDK, Naming

__all__ = [
    "DEFAULT_RUNBOOK_URL",
    "DEFAULT_SLO_TIERS",
    "AlertRule",
    "BudgetPeriod",
    "BurnWindow",
    "RuleOptions",
    "Severity",
]

Severity = Literal["critical", "warning", "info"]
BudgetPeriod = Literal["day", "week", "month"]

DEFAULT_RUNBOOK_URL: Final = "https://github.com/modelwatch/modelwatch/blob/main/docs/runbooks"

_DURATION: Final = {"duration": True}

#: the default availability target of each SLO tier
DEFAULT_SLO_TIERS: Final[Mapping[str, float]] = {"critical": 0.999, "standard": 0.99, "batch": 0.95}


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window burn-rate condition: the error budget burns ``factor`` times too fast
    over both the ``long_s`` and the ``short_s`` window (the short one makes it reset quickly)."""

    long_s: int
    short_s: int
    factor: float


@dataclass(frozen=True)
class AlertRule:
    """One generated alert and what operators need to act on it."""

    name: str
    group: str
    expr: str
    for_s: int
    severity: Severity
    summary: str
    description: str
    #: a symptom of a model outage: inhibited while that model's circuit-open alert fires
    symptom: bool = False
    #: keep firing this long after the condition cleared (Prometheus >= 2.42)
    keep_firing_for_s: int = 0

    @property
    def slug(self) -> str:
        """File stem of the runbook: ``ModelwatchCircuitOpen`` -> ``circuit-open``."""
        stem = self.name.removeprefix("Modelwatch")
        return re.sub(r"(?<!^)(?=[A-Z])", "-", stem).lower()

    def to_rule(self, options: RuleOptions) -> dict[str, object]:
        """The rule as a Prometheus rule-file mapping."""
        rule: dict[str, object] = {"alert": self.name, "expr": self.expr}
        if self.for_s:
            rule["for"] = format_duration(self.for_s)
        if self.keep_firing_for_s:
            rule["keep_firing_for"] = format_duration(self.keep_firing_for_s)
        rule["labels"] = {"severity": self.severity, **dict(options.extra_labels)}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": f"{options.runbook_url.rstrip('/')}/{self.slug}.md",
        }
        return rule


@dataclass(frozen=True)
class RuleOptions:
    """Everything the generated rules can be tuned by. Durations are whole seconds.

    The defaults suit production (15-60 s scrapes); :meth:`scaled` shrinks every window and
    ``for`` for tests against a real Prometheus with 1 s intervals.
    """

    naming: Naming = SDK
    #: extra label matchers put into every selector, e.g. ``job=~"engine|worker"``
    selector: str = ""
    #: the label that tells services apart (the scrape ``job`` by default)
    service_label: str = "job"
    runbook_url: str = DEFAULT_RUNBOOK_URL
    #: static labels added to every alert (for routing, e.g. ``{"team": "ml"}``)
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    #: rule-group evaluation interval; ``None`` uses Prometheus' global one
    evaluation_interval_s: int | None = field(default=None, metadata=_DURATION)

    latency_quantile: float = 0.95
    latency_threshold_s: float = 30.0
    latency_window_s: int = field(default=300, metadata=_DURATION)
    latency_for_s: int = field(default=300, metadata=_DURATION)

    hung_call_threshold_s: float = 60.0
    hung_call_for_s: int = field(default=0, metadata=_DURATION)

    error_rate_threshold: float = 0.05
    #: error kinds with an alert of their own (or that are the caller's doing)
    error_rate_ignore_kinds: tuple[str, ...] = (
        semconv.ERROR_RATE_LIMITED,
        semconv.ERROR_AUTH,
        semconv.ERROR_CANCELLED,
    )
    error_rate_window_s: int = field(default=300, metadata=_DURATION)
    error_rate_for_s: int = field(default=300, metadata=_DURATION)
    auth_for_s: int = field(default=0, metadata=_DURATION)

    rate_limited_threshold: float = 0.05
    rate_limited_window_s: int = field(default=300, metadata=_DURATION)
    rate_limited_for_s: int = field(default=300, metadata=_DURATION)
    quota_remaining_threshold: float = 0.10
    quota_for_s: int = field(default=60, metadata=_DURATION)

    #: the availability target of calls without an SLO tier
    slo_target: float = 0.999
    #: the availability target per SLO tier (``monitored(tier=...)``, ``Router(tier=...)``):
    #: keys from :data:`modelwatch.semconv.SLO_TIERS`; a tier left out is measured against
    #: ``slo_target``
    slo_tiers: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SLO_TIERS))
    #: error kinds that do not count against availability: the caller's own doing
    slo_ignore_kinds: tuple[str, ...] = (semconv.ERROR_BAD_REQUEST, semconv.ERROR_CANCELLED)
    #: page: 2 % of a 30-day budget in 1 h, or 5 % in 6 h (the SRE workbook's table)
    slo_fast_burn: tuple[BurnWindow, ...] = (
        BurnWindow(3600, 300, 14.4),
        BurnWindow(6 * 3600, 1800, 6.0),
    )
    #: ticket: 10 % in 1 d, or 10 % in 3 d
    slo_slow_burn: tuple[BurnWindow, ...] = (
        BurnWindow(86400, 7200, 3.0),
        BurnWindow(3 * 86400, 6 * 3600, 1.0),
    )
    slo_fast_for_s: int = field(default=120, metadata=_DURATION)
    slo_slow_for_s: int = field(default=900, metadata=_DURATION)

    circuit_for_s: int = field(default=0, metadata=_DURATION)
    #: how long the circuit-open alert outlives the open circuit, so that the symptom alerts
    #: it inhibits (whose windows still hold the outage's errors) resolve first
    circuit_keep_firing_s: int = field(default=600, metadata=_DURATION)
    #: more failovers than this in the window fire the alert: a lone retry-worthy 5xx does not
    failover_threshold: float = 3.0
    failover_window_s: int = field(default=300, metadata=_DURATION)
    failover_for_s: int = field(default=0, metadata=_DURATION)

    health_for_s: int = field(default=60, metadata=_DURATION)
    ready_for_s: int = field(default=60, metadata=_DURATION)

    budget_warning_ratio: float = 0.8
    budget_for_s: int = field(default=300, metadata=_DURATION)
    budget_period: BudgetPeriod = "month"
    budget_forecast_window_s: int = field(default=6 * 3600, metadata=_DURATION)
    budget_forecast_for_s: int = field(default=1800, metadata=_DURATION)

    regression_factor: float = 1.5
    regression_min_latency_s: float = 1.0
    regression_window_s: int = field(default=1800, metadata=_DURATION)
    regression_offset_s: int = field(default=86400, metadata=_DURATION)
    regression_for_s: int = field(default=900, metadata=_DURATION)

    #: the quality, drift, anomaly, canary and adaptive-threshold rules (model regressions)
    regressions: RegressionOptions = field(default_factory=RegressionOptions)

    absent_lookback_s: int = field(default=3600, metadata=_DURATION)
    absent_for_s: int = field(default=300, metadata=_DURATION)

    #: a process whose resident memory, extrapolated ``memory_growth_horizon`` ahead from its
    #: trend over ``memory_growth_window``, reaches this multiple of now (and is over
    #: ``memory_min_bytes``) is leaking (``configure(system_metrics=True)``)
    memory_growth_ratio: float = 1.5
    memory_min_bytes: float = 256 * 1024 * 1024
    memory_growth_window_s: int = field(default=1800, metadata=_DURATION)
    memory_growth_horizon_s: int = field(default=3600, metadata=_DURATION)
    memory_growth_for_s: int = field(default=900, metadata=_DURATION)

    def __post_init__(self) -> None:
        if not 0.0 < self.slo_target < 1.0:
            raise ValueError(f"slo_target must be between 0 and 1, not {self.slo_target}")
        for tier, target in dict(self.slo_tiers).items():
            if tier not in semconv.SLO_TIERS:
                raise ValueError(
                    f"slo_tiers: {tier!r} is not a tier; tiers are {', '.join(semconv.SLO_TIERS)}"
                )
            if isinstance(target, bool) or not isinstance(target, int | float):
                raise ValueError(f"slo_tiers[{tier!r}] must be a number, not {target!r}")
            if not 0.0 < target < 1.0:
                raise ValueError(f"slo_tiers[{tier!r}] must be between 0 and 1, not {target}")
        if not 0.0 < self.latency_quantile < 1.0:
            raise ValueError(f"latency_quantile must be between 0 and 1: {self.latency_quantile}")
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", self.service_label):
            raise ValueError(f"service_label is not a label name: {self.service_label!r}")
        if self.budget_period not in ("day", "week", "month"):
            raise ValueError(f"budget_period must be day, week or month: {self.budget_period!r}")

    def scaled(self, factor: float) -> RuleOptions:
        """These options with every window, ``for`` and offset divided by ``factor``.

        ``scaled(60)`` turns minutes into seconds: ``5m`` windows become ``5s``. Each scaled
        duration is at least 1 s (a ``for`` of 0 stays 0).
        """

        def shrink(seconds: int) -> int:
            return 0 if seconds == 0 else max(1, round(seconds / factor))

        changes: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.metadata.get("duration") and value is not None:
                changes[item.name] = shrink(value)
        for name in ("slo_fast_burn", "slo_slow_burn"):
            windows: tuple[BurnWindow, ...] = getattr(self, name)
            changes[name] = tuple(
                BurnWindow(shrink(w.long_s), shrink(w.short_s), w.factor) for w in windows
            )
        changes["regressions"] = dataclasses.replace(
            self.regressions,
            **{
                name: shrink(getattr(self.regressions, name))
                for name in regression_durations(self.regressions)
            },
        )
        return dataclasses.replace(self, **changes)


def regression_durations(options: RegressionOptions) -> tuple[str, ...]:
    """The fields of ``options`` that are durations: whole seconds named ``..._for_s`` or
    ``..._window_s`` (``latency_min_s`` and the other float ``_s`` fields are thresholds)."""
    return tuple(
        item.name
        for item in dataclasses.fields(options)
        if item.name.endswith(("_for_s", "_window_s"))
        and isinstance(getattr(options, item.name), int)
    )
