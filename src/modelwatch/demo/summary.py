"""The end-of-run summary: what users saw against what the models did, times to fail over,
open and recover, the hedged answers during the hang, the budget that moved calls to the cheaper
model, the incidents of the status page, cost by model, and the alerts Prometheus fired."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from modelwatch.capture.cost import cost_of
from modelwatch.demo.alerts import SCRAPE_S, Verdict
from modelwatch.demo.engine import ANALYSES, BUDGETED_MODEL, HEDGED_ANALYSIS, Timing
from modelwatch.demo.readings import (
    BudgetFigures,
    HedgeFigures,
    Incident,
    MetricsReadings,
    budget_figures,
    hedge_figures,
    incidents_from_history,
)
from modelwatch.demo.record import Recorder, error_counts, percentile
from modelwatch.demo.scenario import Scenario
from modelwatch.demo.view import Style, _seconds

__all__ = ["Summary", "render_summary", "summarize"]


@dataclass
class Summary:
    """The numbers of the end-of-run summary (also what the tests read)."""

    elapsed_s: float
    requests: int
    requests_ok: int
    #: every call the engine made to a model: user traffic, health checks, probes
    model_calls: int
    model_calls_ok: int
    model_errors: Counter[str]
    #: the same, for user traffic only
    user_attempts: int
    user_attempts_ok: int
    failovers: int
    #: user requests to the failing analysis while its primary was down: what would have
    #: failed without a router
    exposed_requests: int
    time_to_failover_s: float | None
    time_to_open_s: float | None
    time_to_recover_s: float | None
    p95_by_analysis: dict[str, float | None]
    cost_by_model: dict[str, float]
    calls_by_model: dict[str, int]
    verdicts: list[Verdict]
    cost_source: str = "computed from the price table"
    #: what happened to candidate versions on trial (the canary event lines), with when
    canary: list[str] = field(default_factory=list)
    #: ``modelwatch.failovers`` as the demo's ``/metrics`` counted it (``None``: not read)
    failovers_metric: float | None = None
    #: the hedged router during the hang (``None``: no /metrics read)
    hedge: HedgeFigures | None = None
    #: the expensive model's budget (``None``: no /metrics read)
    budget: BudgetFigures | None = None
    #: the health history's incidents, as the status page lists them (``None``: not read)
    incidents: list[Incident] | None = None
    status_url: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def users_ok_rate(self) -> float:
        """Share of user requests that got an answer."""
        return self.requests_ok / self.requests if self.requests else 0.0

    @property
    def models_ok_rate(self) -> float:
        """Share of all model calls that succeeded (the models' raw success rate)."""
        return self.model_calls_ok / self.model_calls if self.model_calls else 0.0

    @property
    def without_router_ok_rate(self) -> float:
        """Estimated users' success rate had every request stayed on its primary."""
        if not self.requests:
            return 0.0
        return max(0, self.requests_ok - self.exposed_requests) / self.requests


def summarize(
    recorder: Recorder,
    scenario: Scenario,
    *,
    elapsed_s: float,
    verdicts: list[Verdict],
    cost_by_model: dict[str, float],
    cost_source: str,
    timing: Timing | None = None,
    readings: MetricsReadings | None = None,
    history: list[dict[str, Any]] | None = None,
    processes: int = 1,
) -> Summary:
    """Compute the summary of a run from what the recorder saw, and (the hedge, budget and
    incident figures) from modelwatch's telemetry: ``readings`` of the last ``/metrics``
    pages, the ``route`` spans in the recorder, the health ``history``."""
    requests = recorder.requests()
    user = recorder.attempts("user")
    every = recorder.attempts("user", "probe")
    failing = scenario.failing
    incident, healed = scenario.incident_at, scenario.recover_at
    first_failover = min(
        (r.end for r in requests if r.failed_over and r.primary == failing and r.end >= incident),
        default=None,
    )
    moves = [t for t in recorder.transitions() if t.model == failing]
    opened = min((t.at for t in moves if t.to_state == "open" and t.at >= incident), default=None)
    closed = min((t.at for t in moves if t.to_state == "closed" and t.at >= healed), default=None)
    by_analysis: dict[str, list[float]] = defaultdict(list)
    for r in requests:
        by_analysis[r.analysis].append(r.duration)
    calls = Counter(a.model for a in every if a.error is None)
    out = Summary(
        elapsed_s=elapsed_s,
        requests=len(requests),
        requests_ok=sum(1 for r in requests if r.ok),
        model_calls=len(every),
        model_calls_ok=sum(1 for a in every if a.error is None),
        model_errors=error_counts(every),
        user_attempts=len(user),
        user_attempts_ok=sum(1 for a in user if a.error is None),
        failovers=sum(1 for r in requests if r.failed_over),
        exposed_requests=sum(
            1 for r in requests if r.primary == failing and incident <= r.start < healed
        ),
        time_to_failover_s=None if first_failover is None else first_failover - incident,
        time_to_open_s=None if opened is None else opened - incident,
        time_to_recover_s=None if closed is None else closed - healed,
        p95_by_analysis={k: percentile(v, 0.95) for k, v in sorted(by_analysis.items())},
        cost_by_model=cost_by_model,
        calls_by_model=dict(calls),
        verdicts=verdicts,
        cost_source=cost_source,
        canary=[f"{e.at:.1f} s  {e.text}" for e in recorder.events()[0] if e.kind == "canary"],
        incidents=None if history is None else incidents_from_history(history, recorder.wall_t0),
    )
    if timing is not None:
        out.hedge = hedge_figures(
            readings,
            recorder,
            router=HEDGED_ANALYSIS,
            window=(incident, scenario.errors_at),
            attempt_timeout_s=timing.attempt_timeout_s,
            hung=failing,
        )
        out.budget = budget_figures(
            readings,
            recorder,
            model=BUDGETED_MODEL,
            router=_router_of(BUDGETED_MODEL),
            limit_usd=timing.budget_usd(cost_of(BUDGETED_MODEL, None, None) or 0.0, processes),
            processes=processes,
        )
    return out


def _router_of(model: str) -> str:
    return next((a.name for a in ANALYSES if model in (m.model for m in a.models)), "")


def render_summary(
    summary: Summary, scenario: Scenario, timing: Timing, *, style: Style, scale: float
) -> list[str]:
    """The summary's lines."""
    s = style
    failing = scenario.failing

    def secs(value: float | None, what: str) -> str:
        return f"{value:5.2f} s  {what}" if value is not None else f"    -    ({what}: not seen)"

    errors = ", ".join(f"{k} {n}" for k, n in summary.model_errors.most_common()) or "none"
    user_rate = summary.user_attempts_ok / summary.user_attempts if summary.user_attempts else 0.0
    lines = [
        s.bold(f"Summary after {summary.elapsed_s:.1f} s (seed {scenario.seed})"),
        f"  user requests    {summary.requests:>6}   {summary.users_ok_rate:6.1%} succeeded   "
        "<- what users saw",
        f"  model calls      {summary.model_calls:>6}   {summary.models_ok_rate:6.1%} succeeded   "
        f"<- what the models did (errors: {errors})",
        f"    of which users {summary.user_attempts:>6}   {user_rate:6.1%} succeeded   "
        "(the rest: health checks and breaker probes)",
        f"  without failover {summary.exposed_requests:>6}   requests would have hit "
        f"{failing} while it was down: users {summary.without_router_ok_rate:.1%} "
        "(estimate)",
        f"  failovers        {summary.failovers:>6}   requests answered by a backup model"
        + (
            f" (modelwatch_failovers_total: {summary.failovers_metric:.0f}, health checks too)"
            if summary.failovers_metric is not None
            else ""
        ),
        "  time to failover "
        + secs(summary.time_to_failover_s, "first fault -> first answer from the backup"),
        "  time to open     " + secs(summary.time_to_open_s, "first fault -> breaker open"),
        "  time to recover  " + secs(summary.time_to_recover_s, "model healed -> breaker closed"),
        *(f"  canary           {line}" for line in summary.canary or ["no candidate rolled back"]),
        *_hedge_lines(summary.hedge, failing),
        *_budget_lines(summary.budget),
        *_incident_lines(summary),
        "  user latency p95 "
        + ", ".join(f"{k} {_seconds(v).strip()}" for k, v in summary.p95_by_analysis.items()),
        f"  cost by model    ({summary.cost_source})",
    ]
    total = 0.0
    models = {**dict.fromkeys(summary.calls_by_model, 0.0), **summary.cost_by_model}
    for model, cost in sorted(models.items(), key=lambda kv: (-kv[1], kv[0])):
        total += cost
        lines.append(
            f"    {model:<36} ${cost:8.4f}  {summary.calls_by_model.get(model, 0):>5} answers"
        )
    lines.append(f"    {'total':<36} ${total:8.4f}")
    fired = [v for v in summary.verdicts if v.outcome == "fired"]
    skipped = [v for v in summary.verdicts if v.outcome == "not evaluated"]
    if summary.verdicts and len(skipped) == len(summary.verdicts):
        lines.append(
            f"  alerts           not evaluated ({skipped[0].note}): {len(skipped)} generated rules"
        )
        skipped = []
    else:
        lines.append(
            f"  alerts that fired: {len(fired)} of {len(summary.verdicts)} generated rules "
            f"(`modelwatch rules`, windows and `for` scaled 1/{scale:g}), evaluated by "
            f"Prometheus scraping the demo's /metrics every {SCRAPE_S} s"
        )
    for verdict in fired:
        subject, at, value = verdict.fired[0]
        more = f" (+{len(verdict.fired) - 1} more)" if len(verdict.fired) > 1 else ""
        lines.append(
            f"    {s.red('FIRED')}  {verdict.name:<30} {verdict.severity:<8} {at:5.1f}s  "
            f"{subject}: {value}{more}"
        )
    quiet = [v.name.removeprefix("Modelwatch") for v in summary.verdicts if v.outcome == "quiet"]
    if quiet:
        lines.append(f"    {s.green('quiet')}  {', '.join(quiet)}")
    for verdict in skipped:
        lines.append(f"    {s.dim('error')}  {verdict.name}: {verdict.note}")
    lines.append(s.dim(f"  ({timing.describe()})"))
    lines += [f"  {note}" for note in summary.notes]
    return lines


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.0f} ms"


def _hedge_lines(h: HedgeFigures | None, failing: str) -> list[str]:
    if h is None:
        return ["  hedged answers   not read (no /metrics endpoint)"]
    start, end = h.window
    lines = [
        f"  hedged answers {h.started:>6.0f}   hedges started, {h.won:.0f} won "
        f"(modelwatch_hedges_total, router {h.router})"
    ]
    if not h.calls:
        return [*lines, f"    during the hang  no {h.router} call of a user was timed"]
    lines.append(
        f"    during the hang {h.calls} {h.router} calls of users ({start:.1f}-{end:.1f} s, "
        f"their route spans): median {_s(h.median_s)}, p99 {_s(h.p99_s)}"
    )
    if h.opened_at is not None:
        lines.append(
            f"    before its breaker opened ({start:.1f}-{h.opened_at:.1f} s) {h.closed_calls} "
            f"calls met the hung {failing}: median {_s(h.closed_median_s)}, p99 "
            f"{_s(h.closed_p99_s)}; without a hedge each waited the {h.attempt_timeout_s:g} s "
            "attempt timeout"
        )
    else:
        lines.append(
            f"    its breaker stayed closed: without a hedge each call waited the "
            f"{h.attempt_timeout_s:g} s attempt timeout"
        )
    return lines


def _budget_lines(b: BudgetFigures | None) -> list[str]:
    if b is None:
        return ["  budget           not read (no /metrics endpoint)"]
    counted = "" if b.spent_usd is None else f"${b.spent_usd:.4f} counted (modelwatch_budget_used)"
    head = f'  budget           {b.model}: ${b.limit_usd:.4f} a day, enforce="skip"'
    if b.spent_at is None:
        return [f"{head}: not spent in this run ({counted or 'nothing counted'})"]
    moved = ", ".join(f"{n:.0f} to {to}" for to, n in sorted(b.moved.items())) or "none"
    return [
        f"{head}: spent at {b.spent_at:.1f} s (modelwatch.budget.exceeded), {counted}",
        f"    then calls went to the cheaper model: {moved} "
        '(modelwatch_failovers_total{reason="budget"}, health checks included)',
    ]


def _incident_lines(summary: Summary) -> list[str]:
    where = f" {summary.status_url}" if summary.status_url else ""
    if summary.incidents is None:
        return [f"  status page     {where} history not read"]
    lines = [
        f"  status page     {where} lists {len(summary.incidents)} incident(s) "
        "(the health history, GET /health/history)"
    ]
    for i in summary.incidents:
        end = "ongoing" if i.end is None else f"{i.end:.1f} s"
        took = "" if i.end is None else f" ({i.end - i.start:.1f} s)"
        cause = f", root cause {i.cause}" if i.cause else ""
        lines.append(f"    {i.check:<32} {i.state:<9} {i.start:5.1f} s -> {end}{took}{cause}")
    return lines
