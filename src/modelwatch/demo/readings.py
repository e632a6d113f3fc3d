"""What the demo reads back from modelwatch's own telemetry and state for the summary.

At the end of a run, before the endpoints close: the last ``/metrics`` page of every process
serving the engine (cost, failovers, hedges by outcome, budgets used, failovers for a spent
budget) and the health history (``GET /health/history``, what the status page shows). During
the run, the routers' ``route`` spans (:mod:`modelwatch.demo.spans`). The hedge, budget and
status page lines of the summary are computed here from those, not from the scenario's script
(the scenario only says when the hang began and ended, to pick the spans to look at).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelwatch import semconv
from modelwatch.demo._services import fetch
from modelwatch.demo.record import Recorder, percentile
from modelwatch.ops.promnames import SDK, label_name, metric_name
from modelwatch.semconv import MetricSpec

__all__ = [
    "BudgetFigures",
    "HedgeFigures",
    "Incident",
    "MetricsReadings",
    "budget_figures",
    "hedge_figures",
    "incidents_from_history",
    "read_history",
    "read_pages",
]

_ROUTER, _OUTCOME = label_name(semconv.MODELWATCH_ROUTER), label_name(semconv.HEDGE_OUTCOME)
_REASON, _TO, _BUDGET = (
    label_name(semconv.REASON),
    label_name(semconv.TO),
    label_name(semconv.BUDGET),
)
_MODEL = label_name(semconv.GEN_AI_REQUEST_MODEL)
REASON_BUDGET = semconv.REASON_BUDGET  # a backend skipped for its spent budget


def samples(text: str, spec: MetricSpec) -> Iterator[tuple[dict[str, str], float]]:
    """``(labels, value)`` of every sample of metric ``spec`` on a ``/metrics`` page."""
    from prometheus_client.parser import text_string_to_metric_families

    name = metric_name(spec, SDK)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield sample.labels, sample.value


def _add(into: dict[str, float], key: str, value: float) -> None:
    into[key] = into.get(key, 0.0) + value


@dataclass
class MetricsReadings:
    """The last ``/metrics`` pages, added up over the processes that served them."""

    pages: int = 0
    #: model -> USD (``modelwatch_cost_usd_total``)
    costs: dict[str, float] = field(default_factory=dict)
    #: ``modelwatch_failovers_total``, every router and reason
    failovers: float = 0.0
    #: router -> outcome -> ``modelwatch_hedges_total``
    hedges: dict[str, dict[str, float]] = field(default_factory=dict)
    #: router -> backup -> ``modelwatch_failovers_total{reason="budget"}``
    budget_failovers: dict[str, dict[str, float]] = field(default_factory=dict)
    #: budget -> ``modelwatch_budget_used`` (each process' own spend over its limit)
    budget_used: dict[str, float] = field(default_factory=dict)


def read_pages(urls: list[str]) -> MetricsReadings | None:
    """Read and add up the ``/metrics`` pages at ``urls``; ``None`` if none answered."""
    pages = [text for text in (fetch(url) for url in urls) if text is not None]
    if not pages:
        return None
    out = MetricsReadings(pages=len(pages))
    for text in pages:
        for labels, value in samples(text, semconv.COST):
            _add(out.costs, labels.get(_MODEL, ""), value)
        for labels, value in samples(text, semconv.FAILOVERS):
            out.failovers += value
            if labels.get(_REASON) == REASON_BUDGET:
                router = out.budget_failovers.setdefault(labels.get(_ROUTER, ""), {})
                _add(router, labels.get(_TO, ""), value)
        for labels, value in samples(text, semconv.HEDGES):
            _add(
                out.hedges.setdefault(labels.get(_ROUTER, ""), {}), labels.get(_OUTCOME, ""), value
            )
        for labels, value in samples(text, semconv.BUDGET_USED):
            out.budget_used[labels.get(_BUDGET, "")] = value
    return out


@dataclass(frozen=True)
class HedgeFigures:
    """The hedged router during the hang: its hedges and what its calls took."""

    router: str
    started: float
    won: float
    #: the router's calls by users that began during the hang, from their ``route`` spans
    calls: int
    median_s: float | None
    p99_s: float | None
    #: what a call that met the hung primary waits without a hedge, before failing over
    attempt_timeout_s: float
    window: tuple[float, float]
    #: when the hung primary's breaker opened within the window (the router's transition),
    #: and the users' calls before: the ones that met the hung primary
    opened_at: float | None = None
    closed_calls: int = 0
    closed_median_s: float | None = None
    closed_p99_s: float | None = None


def hedge_figures(
    readings: MetricsReadings | None,
    recorder: Recorder,
    *,
    router: str,
    window: tuple[float, float],
    attempt_timeout_s: float,
    hung: str | None = None,
) -> HedgeFigures | None:
    """The hedge line's figures: ``modelwatch_hedges_total`` of ``router`` (every outcome:
    started; ``won``) and its users' calls that began within ``window`` (demo seconds), all
    of them and those before the breaker of the ``hung`` model opened."""
    if readings is None:
        return None
    outcomes = readings.hedges.get(router, {})
    t0 = recorder.wall_t0

    def durations(start: float, end: float) -> list[float]:
        return [
            r.duration
            for r in recorder.routes()
            if r.router == router and r.origin == "user" and start <= r.start_wall - t0 < end
        ]

    opened = min(
        (
            t.at
            for t in recorder.transitions()
            if t.model == hung and t.to_state == "open" and window[0] <= t.at < window[1]
        ),
        default=None,
    )
    closed = durations(window[0], window[1] if opened is None else opened)
    every = durations(*window)
    return HedgeFigures(
        router=router,
        started=sum(outcomes.values()),
        won=outcomes.get(semconv.HEDGE_WON, 0.0),
        calls=len(every),
        median_s=percentile(every, 0.5),
        p99_s=percentile(every, 0.99),
        attempt_timeout_s=attempt_timeout_s,
        window=window,
        opened_at=opened,
        closed_calls=len(closed),
        closed_median_s=percentile(closed, 0.5),
        closed_p99_s=percentile(closed, 0.99),
    )


@dataclass(frozen=True)
class BudgetFigures:
    """A budget with ``enforce="skip"``: its limit, spend, when it ran out, what followed."""

    model: str
    #: the whole budget (every process' share added up)
    limit_usd: float
    #: ``modelwatch_budget_used`` times each process' limit, added up
    spent_usd: float | None
    #: demo seconds of the first ``modelwatch.budget.exceeded`` event (``None``: not spent)
    spent_at: float | None
    #: backup -> calls the router sent there because the budget was spent
    moved: dict[str, float]


def budget_figures(
    readings: MetricsReadings | None,
    recorder: Recorder,
    *,
    model: str,
    router: str,
    limit_usd: float,
    processes: int,
) -> BudgetFigures | None:
    """The budget line's figures for the budget on ``model`` (named after it, with a worker
    suffix under ``--workers``), whose calls ``router`` makes; ``limit_usd`` is each of the
    ``processes``' own limit."""
    if readings is None:
        return None
    used = [v for name, v in readings.budget_used.items() if name.startswith(model)]
    spent = sum(used) * limit_usd if used else None
    events = [e for e in recorder.events()[0] if e.kind == "budget" and model in e.text]
    return BudgetFigures(
        model=model,
        limit_usd=limit_usd * processes,
        spent_usd=spent,
        spent_at=min((e.at for e in events), default=None),
        moved=readings.budget_failovers.get(router, {}),
    )


@dataclass(frozen=True)
class Incident:
    """An incident of the health history, on the demo's timeline."""

    check: str
    state: str
    start: float
    #: ``None``: still going on at the end
    end: float | None
    cause: str | None


def read_history(health_url: str) -> list[dict[str, Any]] | None:
    """The incidents of ``GET {health_url}/history`` (what the status page lists)."""
    text = fetch(f"{health_url}/history")
    if text is None:
        return None
    try:
        incidents: list[dict[str, Any]] = json.loads(text)["incidents"]
    except (ValueError, KeyError, TypeError):
        return None
    return incidents


def incidents_from_history(raw: list[dict[str, Any]], wall_t0: float) -> list[Incident]:
    """The history's incidents (ISO times) in demo seconds, oldest first."""

    def at(iso: str) -> float:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - wall_t0

    out = [
        Incident(
            i["check"],
            i["state"],
            at(i["start"]),
            None if i["end"] is None else at(i["end"]),
            i.get("cause"),
        )
        for i in raw
    ]
    return sorted(out, key=lambda i: i.start)
