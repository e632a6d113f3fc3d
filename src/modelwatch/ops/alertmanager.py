"""An example Alertmanager configuration for modelwatch's alerts.

Routes by ``severity``: ``critical`` pages (PagerDuty) and posts to Slack, ``warning`` posts
to Slack and emails, ``info`` emails; every alert also goes to a generic webhook. Alerts are
grouped by service and model, so one model's outage is one notification. Inhibitions:

- a model's circuit-open alert holds back that model's symptom alerts (error rate, latency
  and its health check: every :attr:`~modelwatch.ops.rules.AlertRule.symptom`): one outage
  notifies once.
  The SLO burn alerts need no inhibition: they count only failures no failover rescued;
- a router with every circuit open holds back its per-circuit and failover alerts;
- a health check that is down on its own (no ``cause``) holds back the health alerts of the
  checks whose root cause it is (``root_cause`` equal; docs/health.md, *Dependencies and
  cascades*), so a Redis outage pages once, for Redis; a dependent that fails while its
  dependencies are up still notifies;
- the fast SLO burn holds back the slow one of the same model and SLO tier, an exhausted
  budget its warnings.

The inhibitions are derived from the generated rules, so they name exactly those alerts.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelwatch import semconv
from modelwatch.ops import _yaml
from modelwatch.ops.durations import format_duration
from modelwatch.ops.promnames import label_name
from modelwatch.ops.rules import ROOT_CAUSE, RuleOptions, build_alerts

__all__ = ["AlertmanagerOptions", "alertmanager_config", "inhibit_rules", "render_alertmanager"]


@dataclass(frozen=True)
class AlertmanagerOptions:
    """Receivers and timings of the example configuration.

    The defaults are placeholders to replace (``example.com``, ``REPLACE_ME``); secrets are
    read from files where Alertmanager 0.25 allows it.
    """

    webhook_url: str = "http://127.0.0.1:9099/alerts"
    slack_api_url_file: str | None = "/etc/alertmanager/secrets/slack-webhook-url"
    #: a literal Slack webhook URL instead of the file (tests point it at a local receiver)
    slack_api_url: str | None = None
    slack_channel: str = "#ml-alerts"
    pagerduty_routing_key: str = "REPLACE_ME"
    #: Events API v2 endpoint; ``None`` keeps Alertmanager's default
    pagerduty_url: str | None = None
    email_to: str = "ml-oncall@example.com"
    email_from: str = "alertmanager@example.com"
    smtp_smarthost: str = "smtp.example.com:587"
    smtp_require_tls: bool = True
    group_wait_s: int = 10
    group_interval_s: int = 60
    repeat_interval_s: int = 4 * 3600
    resolve_timeout_s: int = 300


def _matcher_list(names: list[str]) -> str:
    if len(names) == 1:
        return f'alertname="{names[0]}"'
    return f'alertname=~"{"|".join(names)}"'


def inhibit_rules(rules: RuleOptions | None = None) -> list[dict[str, object]]:
    """The inhibitions, named after the alerts :func:`~modelwatch.ops.rules.build_alerts` makes."""
    rules = rules or RuleOptions()
    alerts = build_alerts(rules)
    names = {a.name for a in alerts}
    svc = rules.service_label
    model = label_name(semconv.GEN_AI_REQUEST_MODEL)
    router = label_name(semconv.MODELWATCH_ROUTER)
    budget = label_name(semconv.BUDGET)
    symptoms = [a.name for a in alerts if a.symptom]
    cause = label_name(semconv.HEALTH_CAUSE)
    found: list[dict[str, object]] = [
        {
            "source_matchers": [_matcher_list(["ModelwatchCircuitOpen"])],
            "target_matchers": [_matcher_list(symptoms)],
            "equal": [svc, model],
        },
        {
            "source_matchers": [_matcher_list(["ModelwatchAllCircuitsOpen"])],
            "target_matchers": [_matcher_list(["ModelwatchCircuitOpen", "ModelwatchFailovers"])],
            "equal": [svc, router],
        },
    ]
    if "ModelwatchHealthCheckDown" in names:
        found.append(
            {
                "source_matchers": [_matcher_list(["ModelwatchHealthCheckDown"]), f'{cause}=""'],
                "target_matchers": [_matcher_list(["ModelwatchHealthCheckDown"]), f'{cause}!=""'],
                "equal": [svc, ROOT_CAUSE],
            }
        )
    if {"ModelwatchErrorBudgetBurnFast", "ModelwatchErrorBudgetBurnSlow"} <= names:
        found.append(
            {
                "source_matchers": [_matcher_list(["ModelwatchErrorBudgetBurnFast"])],
                "target_matchers": [_matcher_list(["ModelwatchErrorBudgetBurnSlow"])],
                "equal": [svc, model, label_name(semconv.MODELWATCH_TIER)],
            }
        )
    found.append(
        {
            "source_matchers": [_matcher_list(["ModelwatchBudgetExhausted"])],
            "target_matchers": [
                _matcher_list(["ModelwatchBudgetNearlySpent", "ModelwatchBudgetForecastOverrun"])
            ],
            "equal": [svc, budget],
        }
    )
    return found


def alertmanager_config(
    options: AlertmanagerOptions | None = None, rules: RuleOptions | None = None
) -> dict[str, object]:
    """The configuration as a mapping (``rules`` names the service label and the alerts)."""
    o = options or AlertmanagerOptions()
    rules = rules or RuleOptions()
    model = label_name(semconv.GEN_AI_REQUEST_MODEL)
    slack: dict[str, object] = {"channel": o.slack_channel, "send_resolved": True}
    if o.slack_api_url:
        slack["api_url"] = o.slack_api_url
    elif o.slack_api_url_file:
        slack["api_url_file"] = o.slack_api_url_file
    slack["title"] = (
        "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} "
        f"{{{{ .GroupLabels.{model} }}}}"
    )
    slack["text"] = (
        "{{ range .Alerts }}*{{ .Annotations.summary }}*\n{{ .Annotations.description }}\n"
        "Runbook: {{ .Annotations.runbook_url }}\n{{ end }}"
    )
    pagerduty: dict[str, object] = {
        "routing_key": o.pagerduty_routing_key,
        "severity": "critical",
        "description": "{{ .CommonAnnotations.summary }}",
        "send_resolved": True,
    }
    if o.pagerduty_url:
        pagerduty["url"] = o.pagerduty_url
    return {
        "global": {
            "resolve_timeout": format_duration(o.resolve_timeout_s),
            "smtp_smarthost": o.smtp_smarthost,
            "smtp_from": o.email_from,
            "smtp_require_tls": o.smtp_require_tls,
        },
        "route": {
            "receiver": "webhook",
            "group_by": [rules.service_label, model],
            "group_wait": format_duration(o.group_wait_s),
            "group_interval": format_duration(o.group_interval_s),
            "repeat_interval": format_duration(o.repeat_interval_s),
            "routes": [
                {"receiver": "pagerduty", "matchers": ['severity="critical"'], "continue": True},
                {
                    "receiver": "slack",
                    "matchers": ['severity=~"critical|warning"'],
                    "continue": True,
                },
                {"receiver": "email", "matchers": ['severity=~"warning|info"'], "continue": True},
                {"receiver": "webhook"},
            ],
        },
        "inhibit_rules": inhibit_rules(rules),
        "receivers": [
            {"name": "pagerduty", "pagerduty_configs": [pagerduty]},
            {"name": "slack", "slack_configs": [slack]},
            {"name": "email", "email_configs": [{"to": o.email_to, "send_resolved": True}]},
            {"name": "webhook", "webhook_configs": [{"url": o.webhook_url, "send_resolved": True}]},
        ],
    }


def render_alertmanager(
    options: AlertmanagerOptions | None = None, rules: RuleOptions | None = None
) -> str:
    """The configuration as YAML text."""
    header = (
        "Example Alertmanager configuration for modelwatch's alerts, generated from the rules\n"
        "(modelwatch.ops.alertmanager). Replace the example.com and REPLACE_ME placeholders,\n"
        "or copy the route and inhibit_rules into your own configuration."
    )
    return _yaml.dump(alertmanager_config(options, rules), header=header)
