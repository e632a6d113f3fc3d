"""The dashboards' Model regressions row: quality, outcomes, drift, anomalies, canaries.

Queries read the raw metrics (not the recording rules), so the panels work without the
generated rules loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from modelwatch import semconv
from modelwatch.ops._grafana import RATE_INTERVAL, Target, timeseries
from modelwatch.ops.promnames import label_name, metric_name

if TYPE_CHECKING:
    from modelwatch.ops.dashboards import _Names

__all__ = ["regression_panels"]

ROW = "Model regressions (quality, outcomes, drift, canaries)"


def regression_panels(n: _Names, by: str, legend: str) -> Iterator[tuple[str, Any]]:
    """Quality score, accuracy, per-label precision and recall, drift, anomaly score, canary
    weight and rollbacks."""
    naming = n.o.naming
    score = metric_name(semconv.QUALITY_SCORE, naming)
    outcomes = metric_name(semconv.QUALITY_OUTCOMES, naming)
    drift = metric_name(semconv.DRIFT_SCORE, naming)
    anomaly = metric_name(semconv.ANOMALY_SCORE, naming)
    weight = metric_name(semconv.CANARY_WEIGHT, naming)
    rollbacks = metric_name(semconv.CANARY_ROLLBACKS, naming)
    metric, lbl, outcome = (
        label_name(semconv.QUALITY_METRIC), label_name(semconv.LABEL), label_name(semconv.OUTCOME)
    )  # fmt: skip
    feature, signal = label_name(semconv.FEATURE), label_name(semconv.ANOMALY_SIGNAL)
    backend, version = (
        label_name(semconv.MODELWATCH_BACKEND),
        label_name(semconv.MODELWATCH_VERSION),
    )
    rate = f"[{RATE_INTERVAL}]"

    def cells(group: str, which: str) -> str:
        sel = n.sel(outcomes, f'{outcome}=~"{which}"', analysis=True)
        return f"sum by ({group}) (rate({sel}{rate}))"

    def mean(part: str) -> str:
        return f"sum by ({by}, {metric}) (rate({n.sel(score + part, analysis=True)}{rate}))"

    per_label = f"{by}, {lbl}"
    panels = (
        ("Quality score", "Mean quality score (0..1) per metric: evaluator scores, ratings.",
         "short", f"{mean('_sum')}\n/\n{mean('_count')}", f"{legend} {{{{{metric}}}}}"),
        ("Accuracy", "Share of labelled answers that were right (record_outcome).",
         "percentunit", f"{cells(by, 'tp')}\n/\n{cells(by, 'tp|fn')}", legend),
        ("Precision per label", "tp / (tp + fp) per label.", "percentunit",
         f"{cells(per_label, 'tp')}\n/\n{cells(per_label, 'tp|fp')}", f"{legend} {{{{{lbl}}}}}"),
        ("Recall per label", "tp / (tp + fn) per label.", "percentunit",
         f"{cells(per_label, 'tp')}\n/\n{cells(per_label, 'tp|fn')}", f"{legend} {{{{{lbl}}}}}"),
        ("Drift (PSI)", "Population stability index per drift monitor and feature; > 0.2 is "
         "drift.", "short",
         f"max by ({label_name(semconv.DRIFT)}, {feature}) ({n.sel(drift, model=False)})",
         f"{{{{{label_name(semconv.DRIFT)}}}}} {{{{{feature}}}}}"),
        ("Anomaly score", "Robust z-score of latency and error rate against the learned "
         "baseline.", "short", f"max by ({by}, {signal}) ({n.sel(anomaly, analysis=True)})",
         f"{legend} {{{{{signal}}}}}"),
        ("Canary weight", "Traffic share of each candidate version (0: rolled back).",
         "percentunit",
         f"max by ({n.router}, {backend}, {version}) ({n.sel(weight, model=False)})",
         f"{{{{{n.router}}}}} {{{{{backend}}}}}"),
        ("Canary rollbacks", "Automatic rollbacks per hour, by the signal that regressed.",
         "short",
         f"sum by ({n.router}, {backend}, {n.reason}) "
         f"(increase({n.sel(rollbacks, model=False)}[1h]))",
         f"{{{{{backend}}}}} {{{{{n.reason}}}}}"),
    )  # fmt: skip
    for title, description, unit, expr, legend_format in panels:
        yield ROW, timeseries(title, description, unit, [Target(expr, legend_format)], width=6)
