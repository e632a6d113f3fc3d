"""Runbooks for every generated alert: ``docs/runbooks/<alert>.md``.

Each runbook says what the alert means, how to confirm it (the alert's own PromQL, generated
with the rules, plus ``modelwatch check`` and ``router.status()``), what to do, and how to
tell it is over. The prose lives here, next to the rules, and a test fails when an alert has
no runbook or a checked-in runbook differs from :func:`runbook_files`.

    python -m modelwatch.ops.runbooks docs/runbooks     # rewrite the checked-in runbooks
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from modelwatch.ops._rules_regressions import RUNBOOK_TEXT
from modelwatch.ops.rules import AlertRule, RuleOptions, build_alerts

__all__ = ["RUNBOOKS", "Runbook", "main", "render_runbook", "runbook_files"]


@dataclass(frozen=True)
class Runbook:
    """The prose of one runbook (the query and the alert's text are generated)."""

    meaning: str
    confirm: tuple[str, ...]
    actions: tuple[str, ...]
    over: str


_TIERS = (
    "Each SLO tier (the `modelwatch_tier` label: `monitored(tier=...)`, `Router(tier=...)`) "
    "burns against its own target (defaults: critical 99.9 %, standard 99 %, batch 95 %; "
    "calls without a tier 99.9 %), so the alert names the tier whose budget burns."
)

_STATUS = (
    "In the service: `router.status()` lists each backend's breaker `state`, "
    "`retry_after_s` and `last_error` (the error kind)."
)
_CHECK = (
    "From a shell: `modelwatch check http://SERVICE/health/models` "
    "(exit 0 ok, 1 degraded, 2 down) shows every model check with its latency and error."
)

RUNBOOKS: Final[dict[str, Runbook]] = {
    "ModelwatchHighLatency": Runbook(
        "Calls to this model are slow at the tail: the p95 of "
        "`gen_ai.client.operation.duration` is over the threshold. Users wait, and calls near "
        "the 25 s attempt timeout turn into `timeout` errors and failovers.",
        (
            "Look at the *Latency p50 / p95 / p99* panel of the model drill-down dashboard: "
            "is it one model or all of them, every analysis type or one?",
            _CHECK,
            "Compare with the provider's status page, and with *Tokens*: longer prompts or "
            "outputs take longer.",
        ),
        (
            "If the provider is slow, let the router fail over: lower the backend's "
            "`timeout_s` so slow calls move to the backup sooner.",
            "If inputs grew, cap `max_tokens` or the prompt size for the analysis type.",
            "A model loading after a cold start (HF 503 *model is loading*) is slow for "
            "minutes: warm it, or keep a backup first in line.",
        ),
        "The p95 drops under the threshold for the alert's window; the alert resolves.",
    ),
    "ModelwatchHungCalls": Runbook(
        "A model call has been running longer than any deadline allows "
        "(`modelwatch.calls.oldest_in_flight`). It holds a worker, a connection and maybe a "
        "lock; this alert fires while the call is still running, before it ends.",
        (
            "The *Hung calls* panel shows the age climbing in a straight line.",
            "Find the call in traces: the open `{operation} {model}` span with no end.",
            _STATUS,
        ),
        (
            "Make sure every call goes through a `Router` or `monitored` call with a timeout "
            "(`attempt_timeout_s`, `timeout_s`): a client without a read timeout hangs forever.",
            "Restart the stuck worker if it does not recover; the breaker will count the "
            "timeout once the call ends.",
        ),
        "The stuck call ends (or the process restarts) and the oldest call in flight is "
        "younger than the threshold again.",
    ),
    "ModelwatchErrorRateHigh": Runbook(
        "A share of calls to this model fails with one error kind (`error.type`): "
        "`unavailable` (5xx, connection refused, model loading), `timeout`, `not_found`, "
        "`bad_request` or `_OTHER`. Rate limits and auth failures have alerts of their own.",
        (
            "The *Errors by kind* panel splits failures by kind and model.",
            _STATUS,
            _CHECK,
        ),
        (
            "`unavailable`/`timeout`: the provider is failing; the breaker opens after 3 "
            "consecutive failures and calls fail over. While the circuit is open this alert is "
            "inhibited in Alertmanager: look at the circuit-open alert instead.",
            "`not_found`: the model id or endpoint is wrong, or the model was removed.",
            "`bad_request`: our requests are wrong (context too long, bad parameters): find "
            "the analysis type in the drill-down and fix the caller.",
        ),
        "The error share stays under the threshold for the window; the alert resolves.",
    ),
    "ModelwatchAuthFailing": Runbook(
        "The provider answers 401 or 403: a token expired, was revoked, lacks a permission or "
        "the wrong one is deployed. Retrying cannot fix it; the breaker opens and calls fail "
        "over, so users may not notice until the backups fail too.",
        (
            "The *Errors by kind* panel shows `auth` for the model.",
            _STATUS + " `last_error` reads `auth`.",
        ),
        (
            "Check the credential the service uses for this provider (`HF_TOKEN`, "
            "`OPENAI_API_KEY`, ...) and its scopes; rotate it and redeploy.",
            "Check the provider's billing and organisation settings: a lapsed plan also "
            "returns 403.",
        ),
        "No auth error for the alert's window; the breaker closes after its next trial call.",
    ),
    "ModelwatchRateLimited": Runbook(
        "The provider answers 429 Too Many Requests to a share of calls. The router benches "
        "the backend for `Retry-After` and fails over, which costs latency and the backup's "
        "quota.",
        (
            "The *Errors by kind* panel shows `rate_limited`; *Rate-limit quota left* shows "
            "how close each limit is.",
            _STATUS + " `retry_after_s` shows the bench time.",
        ),
        (
            "Spread load: add a backup backend on another account or provider.",
            "Raise the quota with the provider, or lower concurrency (Celery worker "
            "concurrency, batch sizes).",
        ),
        "The share of 429s stays under the threshold for the window; the alert resolves.",
    ),
    "ModelwatchRateLimitQuotaLow": Runbook(
        "Less than the threshold share of the provider's rate limit is left "
        "(`modelwatch.rate_limit.remaining`, from rate-limit response headers): 429s are next.",
        ("The *Rate-limit quota left* panel shows each model and limit (requests, tokens).",),
        (
            "If this is a burst (a batch job), let it pass or slow the batch down.",
            "If it is steady growth, raise the quota or add capacity before 429s start.",
        ),
        "The remaining share climbs back over the threshold (limits usually reset each minute).",
    ),
    "ModelwatchLatencyRegression": Runbook(
        "The p95 latency of this model's successful calls is well above the same window a "
        "day earlier: a regression from a deploy, a provider change or a change in inputs, "
        "even if it is still under the absolute latency threshold. Failed calls (timeouts "
        "of an outage) are left out: the error and circuit alerts cover those.",
        (
            "Put the *Latency* panel of the model drill-down next to yesterday's (time shift 1d).",
            "Check recent deploys, prompt or model-version changes, and *Tokens*.",
        ),
        (
            "Roll back a deploy that changed prompts, parameters or the model version.",
            "If the provider got slower, raise it with them, or reorder the router's backends.",
        ),
        "Today's p95 is back within the factor of yesterday's; the alert resolves.",
    ),
    "ModelwatchErrorBudgetBurnFast": Runbook(
        "Calls to this model fail for the caller fast enough to spend a large part of the "
        "month's error budget within hours (multi-window, multi-burn-rate alert: both a long "
        "and a short window burn too fast). Only failures no failover rescued count: an "
        "attempt the router moved to a backup is not a failure for the user. Caller mistakes "
        "(`bad_request`, `cancelled`) do not count either. " + _TIERS,
        (
            "The *Availability* panel shows the success share per model.",
            "The *Errors by kind* panel shows what fails.",
            _STATUS,
        ),
        (
            "Treat it as an incident: users see errors unless failover covers them.",
            "Failover is not covering the failures: the model has no backup behind a router, "
            "or the backups fail too (see the circuit-open and all-circuits-open alerts).",
            "Add a backup backend, or fix the shared cause (credentials, network, quota).",
        ),
        "The short window's error ratio drops under the burn threshold (minutes after the "
        "cause is fixed); the alert resolves.",
    ),
    "ModelwatchErrorBudgetBurnSlow": Runbook(
        "Calls to this model fail for the caller (no failover rescued them) at a rate that "
        "would spend the error budget before the month ends: not an emergency, but the SLO "
        "will be missed if it continues. " + _TIERS,
        ("The *Availability* panel over the last days shows the trend.",),
        (
            "Open a ticket: find the error kinds behind it in *Errors by kind* and fix the "
            "largest one.",
        ),
        "The error ratio over the short window drops under the burn threshold.",
    ),
    "ModelwatchCircuitOpen": Runbook(
        "The circuit breaker of this backend is open: it failed repeatedly (3 consecutive "
        "failures, or half of 10+ calls in 30 s, or most calls too slow), so the router skips "
        "it and sends calls to the next backend. A background probe checks it every 5 s and a "
        "trial call closes the breaker once it answers again.",
        (
            "The *Circuit breakers* panel shows when it opened; *Failovers* shows where calls "
            "go instead.",
            _STATUS,
            _CHECK,
        ),
        (
            "Find why the backend fails: `last_error` in `router.status()`, the provider's "
            "status page, network and credentials.",
            "Watch the backups: failover moves the load (and cost) to them "
            "(see *Failovers* and *Rate-limit quota left*).",
            "Nothing to do for the symptoms: the error-rate, latency and health-check alerts "
            "of this model are inhibited while this alert fires.",
        ),
        "The breaker closes (state 0) after successful trial calls (the *Circuit breakers* "
        "panel turns green). The alert keeps firing for `keep_firing_for` (10m by default) "
        "after that, so the symptom alerts it inhibits have cleared their windows before it "
        "resolves; a symptom that still applies then is a problem of its own.",
    ),
    "ModelwatchAllCircuitsOpen": Runbook(
        "Every backend of this router has its circuit open: no model is taking calls. "
        "Callers get `AllBackendsFailedError`, except the trial calls the router makes to the "
        "backend that reopens soonest.",
        (
            "The *Circuit breakers* panel shows every backend of the router open.",
            _STATUS,
            _CHECK,
        ),
        (
            "Treat it as an outage: check the shared dependencies of all backends first "
            "(egress network, DNS, proxy, credentials used by all of them).",
            "If the providers are down, degrade gracefully (cached answers, queueing) until "
            "one is back.",
        ),
        "At least one backend closes its breaker; the alert resolves.",
    ),
    "ModelwatchFailovers": Runbook(
        "The router is moving calls from this backend to the next one. Users are served, but "
        "each failover costs latency (*Failover cost p95*) and the backup's quota and price.",
        (
            "The *Failovers* panel shows from, to and reason per second.",
            _STATUS,
        ),
        (
            "The `reason` label says why: an error kind, or `circuit_open` while the "
            "breaker is open.",
            "Fix the primary (see its circuit-open or error-rate alert); failover is working "
            "as designed.",
        ),
        "Failovers drop to the threshold or below (3 in 5m by default); the alert resolves.",
    ),
    "ModelwatchHealthCheckDown": Runbook(
        "A health check reports down: a model probe, an analysis-type check or a dependency "
        "(Redis, a database) failed or overran its timeout.",
        (
            "From a shell: `modelwatch check http://SERVICE/health/checks/NAME` shows the "
            "check's status, latency and error.",
            "The *Health checks* panel shows when it went down.",
        ),
        (
            "Model checks: see the circuit-open runbook; dependency checks: restore the "
            "dependency.",
            "A check that is down but not needed should be made non-critical or removed.",
            "A model check is inhibited while that model's circuit-open alert fires: the "
            "circuit-open runbook covers it then.",
        ),
        "The check reports ok (or degraded) again; the alert resolves.",
    ),
    "ModelwatchNotReady": Runbook(
        "A critical health check is down, so `/ready` answers 503 "
        "(`modelwatch.health.ready` is 0): load balancers and Kubernetes stop sending this "
        "service traffic.",
        (
            "From a shell: `modelwatch check http://SERVICE/health/ready`, then "
            "`modelwatch check http://SERVICE/health/` to see which check is down.",
        ),
        (
            "Restore the critical dependency behind the failing check (see its "
            "health-check-down alert).",
            "If every instance is not ready the service is down for users: treat it as an outage.",
        ),
        "`/ready` answers 200 again; the alert resolves.",
    ),
    "ModelwatchBudgetNearlySpent": Runbook(
        "Most of a cost budget for the current period is spent (`modelwatch.budget.used`).",
        ("The *Budgets* panel shows every budget; *Cost* shows which models spend it.",),
        ("Decide now: raise the budget, or move traffic to cheaper models before it runs out.",),
        "The period ends and the budget resets, or the budget is raised.",
    ),
    "ModelwatchBudgetExhausted": Runbook(
        "A cost budget is fully spent for the current period.",
        ("The *Budgets* panel shows the budget at or over 100 %.",),
        (
            "Whatever the service does at the limit (refuse, degrade, keep spending) is "
            "happening now: confirm it is what the business wants.",
            "Raise the budget or cut spending (cheaper models, caching, smaller prompts).",
        ),
        "The period ends and the budget resets, or the budget is raised.",
    ),
    "ModelwatchBudgetForecastOverrun": Runbook(
        "A cost budget will be spent before its period ends, at the spending pace of the "
        "last hours (`predict_linear` over the forecast window).",
        (
            "The *Cost* panel shows which model and analysis type drive the spend; *Tokens* "
            "whether inputs grew.",
        ),
        (
            "Find the change in spend (a new feature, a batch job, a loop calling a model) "
            "and stop it if it is a mistake.",
            "Otherwise raise the budget before it runs out.",
        ),
        "The forecast at the current pace stays under 100 % for the alert's window.",
    ),
    "ModelwatchTelemetryAbsent": Runbook(
        "A service that was reporting modelwatch metrics has sent none for a while: the "
        "service is down, its metrics endpoint or exporter broke, or Prometheus cannot scrape "
        "it. Every other modelwatch alert is blind for this service meanwhile.",
        (
            "Prometheus' *Targets* page (`/targets`) shows the scrape's last error.",
            "`curl http://SERVICE:PORT/metrics` should list `gen_ai_client_operation_duration` "
            "series.",
        ),
        (
            "Restart or fix the service; check `modelwatch.configure(prometheus_port=...)` or "
            "the OTLP exporter's endpoint.",
            "A service renamed on purpose (a new `job` label) also fires this: it resolves "
            "once the old name leaves the lookback window.",
        ),
        "Metrics arrive again; the alert resolves at the next evaluation.",
    ),
    "ModelwatchMemoryGrowth": Runbook(
        "One process's resident memory (`process.memory.usage`, from "
        "`configure(system_metrics=True)`) has been climbing steadily: at this pace it will be "
        "half as large again within the hour. Left alone it ends in an out-of-memory kill, and "
        "every call in flight on that worker fails.",
        (
            "The *System* row of the overview dashboard: is it one instance or all of them, "
            "and did it start with a deploy or with traffic?",
            "Caches keyed by input (prompts, embeddings) and unbounded queues are the usual "
            "causes; `tracemalloc` snapshots a few minutes apart show what grows.",
        ),
        (
            "Restart the instance to buy time (workers of a server with `max_requests` recycle "
            "themselves).",
            "Bound the cache or queue that grows, then deploy the fix.",
        ),
        "Memory levels off: the extrapolated growth falls under the threshold.",
    ),
    **{name: Runbook(*text) for name, text in RUNBOOK_TEXT.items()},  # model regressions
}


def render_runbook(alert: AlertRule, options: RuleOptions | None = None) -> str:
    """The Markdown runbook of ``alert``."""
    options = options or RuleOptions()
    book = RUNBOOKS[alert.name]
    rule = alert.to_rule(options)
    lines = [
        f"# {alert.name}",
        "",
        f"Severity **{alert.severity}**, rule group `{alert.group}`"
        + (f", fires after `for: {rule['for']}`." if "for" in rule else ", fires at once.")
        + (
            " A symptom alert: inhibited while the model's circuit is open."
            if alert.symptom
            else ""
        ),
        "",
        f"> {alert.summary}",
        "",
        "## What it means",
        "",
        book.meaning,
        "",
        "## How to confirm",
        "",
        "The alert's query (default options; generate yours with `modelwatch rules`):",
        "",
        "```promql",
        alert.expr,
        "```",
        "",
        *[f"- {step}" for step in book.confirm],
        "",
        "## What to do",
        "",
        *[f"- {step}" for step in book.actions],
        "",
        "## How to tell it is over",
        "",
        book.over,
        "",
        "---",
        "Generated from `modelwatch.ops.runbooks`; edit the prose there, not here.",
        "",
    ]
    return "\n".join(lines)


def _headline(name: str) -> str:
    """The first clause of a runbook's meaning, for the index."""
    return re.split(r": | \(|\. ", RUNBOOKS[name].meaning, maxsplit=1)[0].rstrip(".")


def runbook_files(options: RuleOptions | None = None) -> dict[str, str]:
    """File name -> Markdown for every alert, plus ``README.md`` (the index)."""
    alerts = build_alerts(options)
    files = {f"{alert.slug}.md": render_runbook(alert, options) for alert in alerts}
    index = [
        "# Runbooks",
        "",
        "One page per alert of `modelwatch rules`; each alert's `runbook_url` points here.",
        "See [alerting](../alerting.md) for installing the rules.",
        "",
        "| alert | severity | summary |",
        "|---|---|---|",
    ]
    index += [f"| [{a.name}]({a.slug}.md) | {a.severity} | {_headline(a.name)} |" for a in alerts]
    files["README.md"] = "\n".join([*index, ""])
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Write :func:`runbook_files` into the folder given (default ``docs/runbooks``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0] if args else "docs/runbooks")
    target.mkdir(parents=True, exist_ok=True)
    for name, text in runbook_files().items():
        (target / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
