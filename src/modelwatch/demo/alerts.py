"""Which generated alert rules fired during the demo, as a real Prometheus evaluated them.

The rules are the file ``modelwatch rules`` writes (:func:`modelwatch.ops.rules.render_rules`),
with every window and ``for`` scaled so that one run stands for an hour of production (a 60 s
run divides them by 60: ``5m`` becomes ``5s``; windows never shorter than three scrapes, so
that ``rate()`` has points to work on), and latency and hung-call thresholds fitted to the
demo's timeouts. Prometheus scrapes the demo's ``/metrics`` every second and evaluates them;
:class:`AlertWatcher` polls ``/api/v1/alerts`` for what fires. Nothing here knows any rule: a
rule added to the generator is in the file, so in the summary, with no demo code.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from modelwatch.demo._background import Background
from modelwatch.demo.prometheus import Prometheus, PrometheusError
from modelwatch.ops._rule_options import regression_durations
from modelwatch.ops.promnames import PromNames
from modelwatch.ops.rules import AlertRule, BurnWindow, RuleOptions, build_alerts, render_rules

__all__ = [
    "SCRAPE_S",
    "AlertWatcher",
    "Verdict",
    "demo_rule_options",
    "not_evaluated",
    "prometheus_config",
]

#: Prometheus' scrape and evaluation interval in the demo, seconds.
SCRAPE_S: Final = 1
#: The shortest window a scaled rule gets: ``rate()`` needs at least two points in it.
MIN_WINDOW_S: Final = 3 * SCRAPE_S
#: How often the watcher asks Prometheus for alerts, seconds.
POLL_S: Final = 0.5
#: The job (and so the ``job`` service label) Prometheus scrapes the demo under.
JOB: Final = "modelwatch-demo"

Outcome = Literal["fired", "quiet", "not evaluated"]


@dataclass(frozen=True)
class Verdict:
    """What one generated alert did during the demo."""

    name: str
    severity: str
    outcome: Outcome
    #: for fired alerts: each subject (its labels) that fired, with when and the value
    fired: tuple[tuple[str, float, str], ...] = ()
    #: for quiet and not-evaluated alerts: why
    note: str = ""


def demo_rule_options(duration: float, *, latency_threshold_s: float, hung_s: float) -> RuleOptions:
    """Rule options for a run of ``duration`` seconds standing for one hour of production."""
    base = RuleOptions(latency_threshold_s=latency_threshold_s, hung_call_threshold_s=hung_s)
    scaled = base.scaled(3600.0 / duration)
    floors: dict[str, Any] = {
        f.name: max(MIN_WINDOW_S, getattr(scaled, f.name))
        for f in dataclasses.fields(scaled)
        if f.name.endswith(("_window_s", "_lookback_s"))
    }
    regressions = scaled.regressions
    floors["regressions"] = dataclasses.replace(
        regressions,
        **{
            name: max(MIN_WINDOW_S, getattr(regressions, name))
            for name in regression_durations(regressions)
            if name.endswith("_window_s")
        },
    )
    for name in ("slo_fast_burn", "slo_slow_burn"):
        floors[name] = tuple(
            BurnWindow(max(MIN_WINDOW_S, w.long_s), max(MIN_WINDOW_S, w.short_s), w.factor)
            for w in getattr(scaled, name)
        )
    return dataclasses.replace(scaled, **floors)


def prometheus_config(metrics_targets: list[str], *, sd_dir: str | None = None) -> str:
    """``prometheus.yml`` scraping the demo's ``/metrics`` targets (``host:port``), or the
    ``file_sd`` target files the workers write into ``sd_dir``, every :data:`SCRAPE_S`
    seconds, and loading ``rules.yml``."""
    interval = f"{SCRAPE_S}s"
    config = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": metrics_targets}]}
            if sd_dir is None
            else {
                "job_name": JOB,
                "file_sd_configs": [{"files": [f"{sd_dir}/*.json"], "refresh_interval": "1s"}],
            }
        ],
    }
    return json.dumps(config, indent=2)


def rule_file(options: RuleOptions) -> str:
    """The rule file Prometheus loads: exactly what ``modelwatch rules`` would write."""
    return render_rules(options)


def not_evaluated(options: RuleOptions, reason: str) -> list[Verdict]:
    """Every generated alert, marked as not evaluated for ``reason``."""
    rules = build_alerts(options)
    return [Verdict(r.name, r.severity, "not evaluated", note=reason) for r in rules]


def _seconds_since_epoch(stamp: str) -> float:
    """An RFC 3339 time from the Prometheus API (nanoseconds, ``Z``) as epoch seconds."""
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


class AlertWatcher:
    """Polls Prometheus' ``/api/v1/alerts``; remembers when each alert first fired.

    Args:
        prometheus: the running server.
        options: the options the rule file was written with.
        wall_t0: the epoch time of the demo's second 0 (Prometheus speaks wall-clock time).
        on_change: called with ``("firing" | "resolved", alert name, subject, value)``.
    """

    def __init__(
        self,
        prometheus: Prometheus,
        options: RuleOptions,
        wall_t0: float,
        on_change: Callable[[str, str, str, str], None],
    ) -> None:
        self._prometheus = prometheus
        self._rules: list[AlertRule] = build_alerts(options)
        self._for = {r.name: r.for_s for r in self._rules}
        self._t0 = wall_t0
        self._on_change = on_change
        names = self._names = PromNames(options.naming)
        #: labels that say what fired, in the order they are printed
        self._subject_labels = (
            names.model,
            names.from_,
            names.router,
            names.check,
            names.error,
            names.resource,
            names.budget,
        )
        self._lock = threading.Lock()
        self._fired: dict[str, dict[str, tuple[float, str]]] = {}
        self._active: set[tuple[str, str]] = set()
        self._errors: dict[str, str] = {}
        self._poller = Background("modelwatch-demo-alerts", self._run)

    def start(self) -> None:
        """Start polling."""
        self._poller.start()

    def stop(self) -> None:
        """Stop polling (after one last poll) and read the rules' health."""
        self._poller.stop()
        self.poll()
        try:
            groups = self._prometheus.api("rules")["groups"]
        except PrometheusError:
            return
        for group in groups:
            for rule in group["rules"]:
                if rule.get("health") == "err":
                    self._errors[rule["name"]] = str(rule.get("lastError", "error"))

    def calls_by_instance(self) -> dict[str, float]:
        """Users' model calls (not probes') per scraped instance, summed over every other
        label (empty when Prometheus does not answer)."""
        n = self._names
        users = f'{n.origin}!="probe"'
        query = f"sum by ({n.instance}) ({n.duration_count}{{{users}}})"
        try:
            result = self._prometheus.api("query", query=query)["result"]
        except PrometheusError:
            return {}
        return {r["metric"].get("instance", "?"): float(r["value"][1]) for r in result}

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(POLL_S):
            self.poll()

    def _subject(self, labels: dict[str, str]) -> str:
        parts = [labels[k] for k in self._subject_labels if labels.get(k)]
        return " / ".join(dict.fromkeys(parts)) or "-"

    def poll(self) -> None:
        """Ask Prometheus for the active alerts once; note new and resolved firing ones."""
        try:
            alerts = self._prometheus.api("alerts")["alerts"]
        except PrometheusError:
            return
        now: set[tuple[str, str]] = set()
        changes = []
        with self._lock:
            for alert in alerts:
                if alert.get("state") != "firing":
                    continue
                name = alert["labels"].get("alertname", "?")
                subject = self._subject(alert["labels"])
                value = f"value {float(alert.get('value', 'nan')):.4g}"
                now.add((name, subject))
                seen = self._fired.setdefault(name, {})
                if subject not in seen:
                    active = _seconds_since_epoch(alert["activeAt"])
                    # firing from the first evaluation at least `for` after it became active
                    at = max(0.0, active + self._for.get(name, 0) - self._t0)
                    seen[subject] = (at, value)
                if (name, subject) not in self._active:
                    changes.append(("firing", name, subject, value))
            changes += [("resolved", n, s, "") for n, s in sorted(self._active - now)]
            self._active = now
        for change in changes:
            self._on_change(*change)

    def verdicts(self) -> list[Verdict]:
        """Every generated alert's verdict: fired ones first (in firing order), then quiet
        ones, then the ones Prometheus could not evaluate."""
        out = []
        with self._lock:
            for rule in self._rules:
                fired = self._fired.get(rule.name)
                if rule.name in self._errors:
                    error = self._errors[rule.name][:120]
                    out.append(Verdict(rule.name, rule.severity, "not evaluated", note=error))
                elif fired:
                    items = sorted(((s, at, v) for s, (at, v) in fired.items()), key=_at)
                    out.append(Verdict(rule.name, rule.severity, "fired", tuple(items)))
                else:
                    out.append(Verdict(rule.name, rule.severity, "quiet"))
        order = {"fired": 0, "quiet": 1, "not evaluated": 2}
        return sorted(out, key=lambda v: (order[v.outcome], v.fired[0][1] if v.fired else 0.0))


def _at(item: tuple[str, float, str]) -> float:
    return item[1]
