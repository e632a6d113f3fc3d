"""grafana-foundation-sdk behind small panel helpers: the dashboards' only contact with it.

The SDK is an optional dependency (``pip install 'modelwatch[dashboards]'``), imported on
first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Final

from modelwatch import semconv

__all__ = [
    "RATE_INTERVAL",
    "DATASOURCE",
    "Target",
    "bargauge",
    "circuit_mappings",
    "datasource",
    "health_mappings",
    "load_sdk",
    "state_timeline",
    "timeseries",
]

#: the range of every panel's ``rate()``: Grafana's own, at least four scrapes
RATE_INTERVAL: Final = "$__rate_interval"

#: every panel queries the dashboard's ``datasource`` variable
DATASOURCE: Final = "${datasource}"


def load_sdk() -> Any:
    """The grafana-foundation-sdk modules used here, imported on first use."""
    try:
        from grafana_foundation_sdk.builders import (
            bargauge,
            common,
            dashboard,
            prometheus,
            statetimeline,
            timeseries,
        )
        from grafana_foundation_sdk.cog import encoder
        from grafana_foundation_sdk.models import dashboard as models
    except ImportError as exc:
        raise ImportError(
            "modelwatch dashboards need grafana-foundation-sdk: "
            "pip install 'modelwatch[dashboards]'"
        ) from exc
    return SimpleNamespace(
        builders=SimpleNamespace(
            bargauge=bargauge,
            common=common,
            dashboard=dashboard,
            prometheus=prometheus,
            statetimeline=statetimeline,
            timeseries=timeseries,
        ),
        cog=SimpleNamespace(encoder=encoder),
        models=SimpleNamespace(dashboard=models),
    )


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel and its legend."""

    expr: str
    legend: str


def add_targets(panel: Any, targets: Sequence[Target]) -> Any:
    """``panel`` with one Prometheus query per target, ``refId`` A, B, C..."""
    prometheus = load_sdk().builders.prometheus
    for i, target in enumerate(targets):
        panel = panel.with_target(
            prometheus.Dataquery()
            .expr(target.expr)
            .legend_format(target.legend)
            .ref_id(chr(65 + i))
        )
    return panel


def datasource() -> Any:
    """The ``${datasource}`` reference every panel and variable uses."""
    return load_sdk().models.dashboard.DataSourceRef(type_val="prometheus", uid=DATASOURCE)


def timeseries(
    title: str, description: str, unit: str, targets: Sequence[Target], width: int = 12
) -> Any:
    """A time series panel with a bottom legend and a shared, sorted tooltip."""
    sdk = load_sdk()
    common = sdk.builders.common
    panel = (
        sdk.builders.timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .unit(unit)
        .height(8)
        .span(width)
        .legend(
            common.VizLegendOptions().show_legend(True).display_mode("list").placement("bottom")
        )
        .tooltip(common.VizTooltipOptions().mode("multi").sort("desc"))
    )
    return add_targets(panel, targets)


def circuit_mappings() -> list[Any]:
    """Circuit state values as text and colour: 0 closed, 1 half-open, 2 open."""
    models = load_sdk().models.dashboard
    result = models.ValueMappingResult
    return [
        models.ValueMap(
            options={
                str(semconv.CIRCUIT_CLOSED): result(text="closed", color="green", index=0),
                str(semconv.CIRCUIT_HALF_OPEN): result(text="half-open", color="yellow", index=1),
                str(semconv.CIRCUIT_OPEN): result(text="open", color="red", index=2),
            }
        )
    ]


def health_mappings() -> list[Any]:
    """Health status values as text and colour: 1 ok, 0.5 degraded, 0 down."""
    models = load_sdk().models.dashboard
    result = models.ValueMappingResult
    return [
        models.ValueMap(
            options={
                "1": result(text="ok", color="green", index=0),
                "0.5": result(text="degraded", color="yellow", index=1),
                "0": result(text="down", color="red", index=2),
            }
        )
    ]


def state_timeline(
    title: str, description: str, target: Target, mappings: list[Any], width: int = 12
) -> Any:
    """A state timeline panel (breakers, health checks) with value ``mappings``."""
    sdk = load_sdk()
    common = sdk.builders.common
    panel = (
        sdk.builders.statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .height(8)
        .span(width)
        .mappings(mappings)
        .show_value("never")
        .legend(
            common.VizLegendOptions().show_legend(True).display_mode("list").placement("bottom")
        )
        .tooltip(common.VizTooltipOptions().mode("single").sort("none"))
    )
    return add_targets(panel, [target])


def bargauge(title: str, description: str, unit: str, target: Target, width: int = 12) -> Any:
    """A bar gauge from 0 to 1, orange from 0.8 and red from 1 (budgets)."""
    sdk = load_sdk()
    dashboard = sdk.builders.dashboard
    steps = sdk.models.dashboard.Threshold
    panel = (
        sdk.builders.bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .unit(unit)
        .min(0)
        .max(1)
        .height(8)
        .span(width)
        .display_mode("gradient")
        .orientation("horizontal")
        .show_unfilled(True)
        .reduce_options(
            sdk.builders.common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
        )
        .thresholds(
            dashboard.ThresholdsConfig()
            .mode("absolute")
            .steps(
                [
                    steps(value=None, color="green"),
                    steps(value=0.8, color="orange"),
                    steps(value=1.0, color="red"),
                ]
            )
        )
    )
    return add_targets(panel, [target])
