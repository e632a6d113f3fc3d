"""PromQL building blocks for the alert rules: names, labels and selectors for given options."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from modelwatch import semconv
from modelwatch.ops._rule_options import RuleOptions
from modelwatch.ops.durations import format_duration
from modelwatch.ops.promnames import PromNames

__all__ = ["FAILOVER_REASON_CIRCUIT_OPEN", "HEALTH_KIND_MODEL", "Queries", "num", "percent"]

#: the ``reason`` of a failover that skipped an open circuit (no failed attempt behind it);
#: the router's ``REASON_CIRCUIT_OPEN``
FAILOVER_REASON_CIRCUIT_OPEN: Final = semconv.REASON_CIRCUIT_OPEN
#: the ``modelwatch.health.kind`` of a model check (``Health.add(..., kind="model")``)
HEALTH_KIND_MODEL: Final = semconv.HEALTH_KIND_MODEL


def num(value: float) -> str:
    """A number as PromQL and humans like it: ``0.0144``, ``30``, ``1.5``."""
    return f"{value:.10g}"


def percent(value: float) -> str:
    return f"{value * 100:.10g}%"


def _regex(values: Sequence[str]) -> str:
    return "|".join(re.escape(v) for v in values)


class Queries(PromNames):
    """PromQL building blocks for one set of options."""

    def __init__(self, options: RuleOptions) -> None:
        super().__init__(options.naming)
        self.o = options
        self.svc = options.service_label

    def sel(self, metric: str, *matchers: str) -> str:
        """``metric{matchers, options.selector}``."""
        parts = [m for m in (*matchers, self.o.selector) if m]
        return f"{metric}{{{', '.join(parts)}}}" if parts else metric

    def errors(self, ignore: Sequence[str]) -> str:
        """Matchers for failed calls, leaving out the ``ignore`` kinds."""
        matchers = [f'{self.error}!=""']
        if ignore:
            matchers.append(f'{self.error}!~"{_regex(ignore)}"')
        return ", ".join(matchers)

    def by_model(self, *extra: str) -> str:
        return ", ".join((self.svc, self.model, *extra))

    def quantile(self, window_s: int, offset_s: int = 0, *matchers: str) -> str:
        offset = f" offset {format_duration(offset_s)}" if offset_s else ""
        buckets = self.sel(self.duration_bucket, *matchers)
        rate = f"rate({buckets}[{format_duration(window_s)}]{offset})"
        return (
            f"histogram_quantile({num(self.o.latency_quantile)}, "
            f"sum by ({self.by_model('le')}) ({rate}))"
        )

    def call_rate(self, window_s: int, *matchers: str, by: str = "") -> str:
        """Calls per second by service and model (``by``: other grouping labels)."""
        rate = f"rate({self.sel(self.duration_count, *matchers)}[{format_duration(window_s)}])"
        return f"sum by ({by or self.by_model()}) ({rate})"

    def error_ratio(self, window_s: int) -> str:
        """Share of users' calls that failed for the caller, by service, model and SLO tier:
        a failed attempt the router failed over from was rescued by the next backend, so it
        does not count against the SLO, and calls made by health checks and breaker probes
        are not users' calls at all."""
        by = self.by_model(self.tier)
        users = f'{self.origin}!="{semconv.ORIGIN_PROBE}"'
        failed = self.call_rate(window_s, self.errors(self.o.slo_ignore_kinds), users, by=by)
        skipped = f'{self.reason}!="{FAILOVER_REASON_CIRCUIT_OPEN}"'
        rescued = (
            f"sum by ({by}) (label_replace("
            f"rate({self.sel(self.failovers, skipped)}[{format_duration(window_s)}]), "
            f'"{self.model}", "$1", "{self.from_}", "(.*)"))'
        )
        unrescued = f"clamp_min(\n({failed}\n- on ({by})\n{rescued})\nor\n{failed},\n0)"
        return f"{unrescued}\n/\n{self.call_rate(window_s, users, by=by)}"

    def period_seconds_left(self) -> str:
        """Seconds until the current budget period ends (UTC), as a PromQL scalar."""
        rest_of_today = "(86400 - time() % 86400)"
        if self.o.budget_period == "day":
            return rest_of_today
        if self.o.budget_period == "week":  # ISO weeks end on Sunday night
            days = "(6 - (day_of_week() + 6) % 7)"
        else:
            days = "(days_in_month() - day_of_month())"
        return f"scalar({days} * 86400 + {rest_of_today})"
