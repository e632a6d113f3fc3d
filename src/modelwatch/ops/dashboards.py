"""Grafana dashboards for modelwatch, generated from :mod:`modelwatch.semconv`.

Built with Grafana's own ``grafana-foundation-sdk`` (``pip install 'modelwatch[dashboards]'``),
so the JSON follows Grafana's schema; metric and label names come from semconv through
:mod:`modelwatch.ops.promnames`, like the alert rules.

- :func:`overview_dashboard`: the service overview: availability per model, requests,
  p50/p95/p99 latency, errors by kind, tokens, cost and budgets, breaker states over time,
  failovers, health checks, hung calls, rate-limit quota.
- :func:`model_dashboard`: one model in depth (a drill-down linked from the overview).

Both have template variables ``datasource``, ``service``, ``model`` and ``analysis``, and
import into Grafana as they are (Dashboards -> New -> Import).

>>> import json
>>> board = json.loads(render_dashboard("overview"))
>>> board["uid"]
'modelwatch-overview'
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from modelwatch.ops._grafana import (
    RATE_INTERVAL,
    Target,
    bargauge,
    circuit_mappings,
    datasource,
    health_mappings,
    load_sdk,
    state_timeline,
    timeseries,
)
from modelwatch.ops._panels_regressions import regression_panels
from modelwatch.ops._panels_system import system_panels
from modelwatch.ops.promnames import SDK, Naming, PromNames

if TYPE_CHECKING:  # the SDK is an optional dependency
    from grafana_foundation_sdk.cog.builder import Builder

__all__ = [
    "DASHBOARDS",
    "DashboardOptions",
    "dashboard_queries",
    "model_dashboard",
    "overview_dashboard",
    "render_dashboard",
]

DashboardName = Literal["overview", "model"]
#: dashboard name -> uid
DASHBOARDS: Final[dict[str, str]] = {
    "overview": "modelwatch-overview",
    "model": "modelwatch-model",
}
_RATE: Final = RATE_INTERVAL


@dataclass(frozen=True)
class DashboardOptions:
    """What the dashboards can be tuned by (the same naming and labels as the rules)."""

    naming: Naming = SDK
    #: extra label matchers put into every selector, e.g. ``env="prod"``
    selector: str = ""
    #: the label that tells services apart (the scrape ``job`` by default)
    service_label: str = "job"
    #: dashboard refresh interval
    refresh: str = "30s"
    #: the default time range (``now-<time_from>`` to ``now``)
    time_from: str = "1h"


class _Names(PromNames):
    """Metric and label names, and the variable-filtered selectors every panel uses."""

    def __init__(self, options: DashboardOptions) -> None:
        super().__init__(options.naming)
        self.o = options
        self.svc = options.service_label

    def sel(self, metric: str, *matchers: str, model: bool = True, analysis: bool = False) -> str:
        """``metric{service, model, analysis filters, matchers, options.selector}``."""
        parts = [f'{self.svc}=~"$service"']
        if model:
            parts.append(f'{self.model}=~"$model"')
        if analysis:
            parts.append(f'{self.analysis}=~"$analysis"')
        parts += [m for m in (*matchers, self.o.selector) if m]
        return f"{metric}{{{', '.join(parts)}}}"

    def calls(self, *matchers: str) -> str:
        return self.sel(f"{self.duration}_count", *matchers, analysis=True)

    def quantile(self, q: float, metric: str, by: str) -> str:
        buckets = self.sel(f"{metric}_bucket", analysis=metric != self.ttfc)
        rate = f"rate({buckets}[{_RATE}])"
        return f"histogram_quantile({q}, sum by ({by}, le) ({rate}))"


# --------------------------------------------------------------------------- the panels
def _traffic_panels(n: _Names, by: str, legend: str) -> Iterator[tuple[str, Any]]:
    ok = n.calls(f'{n.error}=""')
    failed = n.calls(f'{n.error}!=""')
    yield (
        "Traffic and errors",
        timeseries(
            "Availability",
            "Share of model calls that succeeded.",
            "percentunit",
            [
                Target(
                    f"sum by ({by}) (rate({ok}[{_RATE}]))\n/\n"
                    f"sum by ({by}) (rate({n.calls()}[{_RATE}]))",
                    legend,
                )
            ],
        ),
    )
    yield (
        "Traffic and errors",
        timeseries(
            "Requests",
            "Model calls per second, successful or not.",
            "reqps",
            [Target(f"sum by ({by}) (rate({n.calls()}[{_RATE}]))", legend)],
        ),
    )
    yield (
        "Traffic and errors",
        timeseries(
            "Errors by kind",
            "Failed model calls per second, by error kind (error.type).",
            "reqps",
            [
                Target(
                    f"sum by ({by}, {n.error}) (rate({failed}[{_RATE}]))",
                    f"{legend} {{{{{n.error}}}}}",
                )
            ],
        ),
    )
    yield (
        "Traffic and errors",
        timeseries(
            "Latency p50 / p95 / p99",
            "Model call duration quantiles (the alert threshold is on p95).",
            "s",
            [
                Target(n.quantile(q, n.duration, by), f"{legend} p{int(q * 100)}")
                for q in (0.5, 0.95, 0.99)
            ],
        ),
    )


def _usage_panels(n: _Names, by: str, legend: str) -> Iterator[tuple[str, Any]]:
    tokens = n.sel(f"{n.tokens}_sum", analysis=True)
    yield (
        "Tokens and cost",
        timeseries(
            "Tokens",
            "Tokens per second, input and output.",
            "short",
            [
                Target(
                    f"sum by ({by}, {n.token_type}) (rate({tokens}[{_RATE}]))",
                    f"{legend} {{{{{n.token_type}}}}}",
                )
            ],
        ),
    )
    yield (
        "Tokens and cost",
        timeseries(
            "Cost",
            "Spend in US dollars per hour, from the price table.",
            "currencyUSD",
            [
                Target(
                    f"sum by ({by}) (rate({n.sel(n.cost, analysis=True)}[{_RATE}])) * 3600",
                    legend,
                )
            ],
        ),
    )
    yield (
        "Tokens and cost",
        timeseries(
            "Time to first chunk p95",
            "Streaming calls: time until the first chunk arrived.",
            "s",
            [Target(n.quantile(0.95, n.ttfc, by), legend)],
        ),
    )


def _resilience_panels(n: _Names, by: str, legend: str) -> Iterator[tuple[str, Any]]:
    state = n.sel(n.state)
    failovers = n.sel(n.failovers, f'{n.from_}=~"$model"', model=False)
    yield (
        "Resilience",
        state_timeline(
            "Circuit breakers",
            "Breaker state per backend over time: closed, half-open, open.",
            Target(
                f"max by ({n.router}, {n.model}) ({state})",
                f"{{{{{n.router}}}}} / {{{{{n.model}}}}}",
            ),
            circuit_mappings(),
        ),
    )
    yield (
        "Resilience",
        timeseries(
            "Failovers",
            "Calls moved from one backend to the next, per second.",
            "reqps",
            [
                Target(
                    f"sum by ({n.router}, {n.from_}, {n.to}, {n.reason}) "
                    f"(rate({failovers}[{_RATE}]))",
                    f"{{{{{n.from_}}}}} -> {{{{{n.to}}}}} ({{{{{n.reason}}}}})",
                )
            ],
        ),
    )
    transitions = n.sel(n.transitions)
    yield (
        "Resilience",
        timeseries(
            "Breaker transitions",
            "Circuit breaker state changes, by the state entered.",
            "short",
            [
                Target(
                    f"sum by ({n.model}, {n.to}) (increase({transitions}[{_RATE}]))",
                    f"{{{{{n.model}}}}} -> {{{{{n.to}}}}}",
                )
            ],
        ),
    )
    extra = n.sel(f"{n.failover_duration}_bucket", f'{n.from_}=~"$model"', model=False)
    yield (
        "Resilience",
        timeseries(
            "Failover cost p95",
            "Extra time a call spent because it failed over.",
            "s",
            [
                Target(
                    f"histogram_quantile(0.95, sum by ({n.router}, le) (rate({extra}[{_RATE}])))",
                    f"{{{{{n.router}}}}}",
                )
            ],
        ),
    )
    del by, legend


def _health_panels(n: _Names, by: str, legend: str, model_only: bool) -> Iterator[tuple[str, Any]]:
    health = n.sel(n.health, model=False)
    if model_only:
        health = n.sel(n.health, f'{n.check}=~"$model"', model=False)
    yield (
        "Health and capacity",
        state_timeline(
            "Health checks",
            "Health check status over time: ok, degraded, down.",
            Target(
                f"min by ({n.check}, {n.kind}) ({health})",
                f"{{{{{n.kind}}}}} {{{{{n.check}}}}}",
            ),
            health_mappings(),
        ),
    )
    yield (
        "Health and capacity",
        state_timeline(
            "Readiness by instance",
            "Each process's own /ready: 1 ready, 0 while one of its critical checks is down.",
            Target(
                f"min by ({n.instance}) ({n.sel(n.ready, model=False)})",
                f"{{{{{n.instance}}}}}",
            ),
            health_mappings(),
        ),
    )
    yield (
        "Health and capacity",
        timeseries(
            "Hung calls: oldest call in flight",
            "Age of the oldest running call: a hung call climbs here before it ends.",
            "s",
            # per instance: which worker holds the stuck call
            [
                Target(
                    f"max by ({by}, {n.instance}) ({n.sel(n.oldest, analysis=True)})",
                    f"{legend} on {{{{{n.instance}}}}}",
                )
            ],
            width=6,
        ),
    )
    yield (
        "Health and capacity",
        timeseries(
            "Calls in flight",
            "Model calls running now.",
            "short",
            [Target(f"sum by ({by}) ({n.sel(n.in_flight, analysis=True)})", legend)],
            width=6,
        ),
    )
    yield (
        "Health and capacity",
        timeseries(
            "Rate-limit quota left",
            "Remaining share of the provider's rate limit, from response headers.",
            "percentunit",
            [
                Target(
                    f"min by ({n.model}, {n.resource}) ({n.sel(n.remaining)})",
                    f"{{{{{n.model}}}}} {{{{{n.resource}}}}}",
                )
            ],
        ),
    )
    yield (
        "Health and capacity",
        bargauge(
            "Budgets",
            "Share of each cost budget spent in its period.",
            "percentunit",
            Target(
                f"sum by ({n.budget}) ({n.sel(n.budget_used, model=False)})",
                f"{{{{{n.budget}}}}}",
            ),
        ),
    )


# --------------------------------------------------------------------------- dashboards
def _variables(n: _Names, multi_model: bool) -> list[Any]:
    sdk = load_sdk()
    board = sdk.builders.dashboard
    calls = f"{n.duration}_count"
    extra = f", {n.o.selector}" if n.o.selector else ""

    def query(name: str, label: str, query_text: str, multi: bool) -> Any:
        variable = (
            board.QueryVariable(name)
            .label(label)
            .datasource(datasource())
            .query(query_text)
            .refresh(2)  # on time range change
            .sort(1)
            .multi(multi)
            .include_all(True)
            .all_value(".*")
        )
        if not multi:
            variable = variable.include_all(False)
        return variable

    return [
        board.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        query(
            "service",
            "Service",
            f"label_values({calls}{{{n.o.selector}}}, {n.svc})"
            if n.o.selector
            else f"label_values({calls}, {n.svc})",
            multi=True,
        ),
        query(
            "model",
            "Model",
            f'label_values({calls}{{{n.svc}=~"$service"{extra}}}, {n.model})',
            multi=multi_model,
        ),
        query(
            "analysis",
            "Analysis",
            f'label_values({calls}{{{n.svc}=~"$service"{extra}}}, {n.analysis})',
            multi=True,
        ),
    ]


def _assemble(
    title: str,
    uid: str,
    description: str,
    panels: Iterator[tuple[str, Any]],
    n: _Names,
    *,
    multi_model: bool,
    link_title: str,
) -> Any:
    sdk = load_sdk()
    board = sdk.builders.dashboard
    dashboard = (
        board.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["modelwatch", "genai"])
        .editable()
        .refresh(n.o.refresh)
        .time(f"now-{n.o.time_from}", "now")
        .timezone("browser")
        .tooltip(1)  # shared crosshair
        .link(
            board.DashboardLink(link_title)
            .type("dashboards")
            .tags(["modelwatch"])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in _variables(n, multi_model):
        dashboard = dashboard.with_variable(variable)
    current_row = None
    panel_id = 1
    for row, panel in panels:
        if row != current_row:
            dashboard = dashboard.with_row(board.Row(row).id(panel_id))
            panel_id += 1
            current_row = row
        dashboard = dashboard.with_panel(panel.id(panel_id))
        panel_id += 1
    return dashboard


def _dashboard(name: DashboardName, options: DashboardOptions | None) -> Builder[Any]:
    """The overview (per model, with the System row) or the drill-down (one model, per
    analysis type): the same panels, split differently."""
    n = _Names(options or DashboardOptions())
    overview = name == "overview"
    by = n.model if overview else f"{n.model}, {n.analysis}"
    legend = f"{{{{{n.model if overview else n.analysis}}}}}"

    def panels() -> Iterator[tuple[str, Any]]:
        yield from _traffic_panels(n, by, legend)
        yield from _usage_panels(n, by, legend)
        yield from _resilience_panels(n, by, legend)
        yield from _health_panels(n, by, legend, model_only=not overview)
        yield from regression_panels(n, by, legend)
        if overview:
            yield from system_panels(n)

    result: Builder[Any] = _assemble(
        "modelwatch / service overview" if overview else "modelwatch / model drill-down",
        DASHBOARDS[name],
        "Model calls, failover and health of services instrumented with modelwatch."
        if overview
        else "One model in depth, split by analysis type.",
        panels(),
        n,
        multi_model=overview,
        link_title="Model drill-down" if overview else "Service overview",
    )
    return result


def overview_dashboard(options: DashboardOptions | None = None) -> Builder[Any]:
    """The service overview dashboard (a grafana-foundation-sdk builder)."""
    return _dashboard("overview", options)


def model_dashboard(options: DashboardOptions | None = None) -> Builder[Any]:
    """The per-model drill-down dashboard (a grafana-foundation-sdk builder)."""
    return _dashboard("model", options)


def render_dashboard(
    name: DashboardName = "overview", options: DashboardOptions | None = None
) -> str:
    """The dashboard as Grafana JSON text (what ``modelwatch dashboard`` prints)."""
    builder = {"overview": overview_dashboard, "model": model_dashboard}[name](options)
    encoder = load_sdk().cog.encoder.JSONEncoder(sort_keys=True, indent=2)
    text: str = encoder.encode(builder.build())
    return text + "\n"


def dashboard_queries(dashboard_json: str) -> list[str]:
    """Every PromQL expression of a rendered dashboard's panels, in order."""
    board = json.loads(dashboard_json)
    found: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend(t["expr"] for t in panel.get("targets") or [] if t.get("expr"))
            walk(panel.get("panels") or [])

    walk(board.get("panels") or [])
    return found
