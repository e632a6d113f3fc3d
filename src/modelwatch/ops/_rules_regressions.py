"""Generated rules for model regressions: quality, outcomes, drift, anomalies, canary rollbacks,
and adaptive (z-score) thresholds for error rate and p95 latency.

Two rule groups, each recording rules first, then the alerts that read them:

- ``modelwatch.quality``: mean quality score over 1 h and 1 d; per label precision, recall,
  F1 and accuracy, and per model the accuracy (``sum(tp) / sum(tp + fn)`` over labels: each
  answer's actual label is counted once as tp or fn), over 1 h and 1 d; alerts when the last
  hour is worse than the last day by more than a margin (with a minimum of feedback), when a
  drift score passes its threshold, when a learned-baseline anomaly score is high, and when
  a canary version was rolled back.
- ``modelwatch.adaptive``: the 5-minute error ratio and p95 latency per model, their 1-day
  ``avg_over_time``/``stddev_over_time``, and alerts on the z-score of now against that day
  (with an absolute floor on the standard deviation, so a perfectly steady day does not make
  every blip a page).

Hooked into :mod:`modelwatch.ops.rules` (``build_alerts``/``rule_groups``); the runbook prose
is :data:`RUNBOOK_TEXT`, turned into runbooks by :mod:`modelwatch.ops.runbooks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from modelwatch import semconv
from modelwatch.ops._promql import Queries, num
from modelwatch.ops._regression_options import RegressionOptions
from modelwatch.ops.durations import format_duration
from modelwatch.ops.promnames import label_name, metric_name

if TYPE_CHECKING:
    from modelwatch.ops.rules import AlertRule

__all__ = ["GROUPS", "RUNBOOK_TEXT", "RegressionOptions", "alerts", "recording_rules"]

GROUPS: Final = ("modelwatch.quality", "modelwatch.adaptive")
#: the alert's value with two decimals (scores, PSI, z: ``humanize`` would print 700m)
_V: Final = '{{ $value | printf "%.2f" }}'
QUALITY, ADAPTIVE = GROUPS


class _Names:
    def __init__(self, q: Queries) -> None:
        n = q.o.naming
        self.score = metric_name(semconv.QUALITY_SCORE, n)
        self.outcomes = metric_name(semconv.QUALITY_OUTCOMES, n)
        self.drift = metric_name(semconv.DRIFT_SCORE, n)
        self.anomaly = metric_name(semconv.ANOMALY_SCORE, n)
        self.rollbacks = metric_name(semconv.CANARY_ROLLBACKS, n)
        self.metric = label_name(semconv.QUALITY_METRIC)
        self.label = label_name(semconv.LABEL)
        self.outcome = label_name(semconv.OUTCOME)
        self.feature = label_name(semconv.FEATURE)
        self.drift_name = label_name(semconv.DRIFT)
        self.signal = label_name(semconv.ANOMALY_SIGNAL)
        self.backend = label_name(semconv.MODELWATCH_BACKEND)
        self.version = label_name(semconv.MODELWATCH_VERSION)


def _options(q: Queries) -> RegressionOptions:
    found = getattr(q.o, "regressions", None)
    return found if isinstance(found, RegressionOptions) else RegressionOptions()


def _r(name: str, expr: str) -> dict[str, object]:
    return {"record": name, "expr": expr}


def _ratio_rules(q: Queries, n: _Names, window: str) -> list[dict[str, object]]:
    by = f"{q.by_model(q.analysis)}"
    per_label = f"{by}, {n.label}"
    rate = f"modelwatch:quality_outcomes:rate{window}"

    def cells(by_: str, outcomes: str) -> str:
        return f'sum by ({by_}) ({rate}{{{n.outcome}=~"{outcomes}"}})'

    return [
        _r(
            rate,
            f"sum by ({per_label}, {n.outcome}) (rate({q.sel(n.outcomes)}[{window}]))",
        ),
        _r(
            f"modelwatch:quality_precision:ratio_rate{window}",
            f"{cells(per_label, 'tp')}\n/\n{cells(per_label, 'tp|fp')}",
        ),
        _r(
            f"modelwatch:quality_recall:ratio_rate{window}",
            f"{cells(per_label, 'tp')}\n/\n{cells(per_label, 'tp|fn')}",
        ),
        _r(
            f"modelwatch:quality_f1:ratio_rate{window}",
            f"2 * {cells(per_label, 'tp')}\n/\n"
            f"({cells(per_label, 'tp|fp|fn')} + {cells(per_label, 'tp')})",
        ),
        _r(
            f"modelwatch:quality_label_accuracy:ratio_rate{window}",
            f"{cells(per_label, 'tp|tn')}\n/\n{cells(per_label, 'tp|fp|fn|tn')}",
        ),
        _r(
            f"modelwatch:quality_accuracy:ratio_rate{window}",
            f"{cells(by, 'tp')}\n/\n{cells(by, 'tp|fn')}",
        ),
    ]


def recording_rules(q: Queries) -> dict[str, list[dict[str, object]]]:
    """The recording rules of each group, in evaluation order."""
    n = _Names(q)
    by = q.by_model(q.analysis, n.metric)
    mean = [
        _r(
            f"modelwatch:quality_score:mean{w}",
            f"sum by ({by}) (rate({q.sel(n.score + '_sum')}[{w}]))\n/\n"
            f"sum by ({by}) (rate({q.sel(n.score + '_count')}[{w}]))",
        )
        for w in ("1h", "1d")
    ]
    quality = [*mean, *_ratio_rules(q, n, "1h"), *_ratio_rules(q, n, "1d")]
    o = q.o
    users = f'{q.origin}!="{semconv.ORIGIN_PROBE}"'
    failed = q.call_rate(300, q.errors(o.error_rate_ignore_kinds), users)
    error_ratio = f"(\n{failed}\nor\n{q.call_rate(300, users)} * 0\n)\n/\n{q.call_rate(300, users)}"
    ok = f'{q.error}=""'
    adaptive = [
        _r("modelwatch:error_ratio:rate5m", error_ratio),
        _r("modelwatch:latency_p95:rate5m", _p95(q, ok)),
    ]
    for name in ("modelwatch:error_ratio:rate5m", "modelwatch:latency_p95:rate5m"):
        adaptive += [
            _r(f"{name}:avg1d", f"avg_over_time({name}[1d])"),
            _r(f"{name}:stddev1d", f"stddev_over_time({name}[1d])"),
        ]
    return {QUALITY: quality, ADAPTIVE: adaptive}


def _p95(q: Queries, *matchers: str) -> str:
    rate = f"rate({q.sel(q.duration_bucket, *matchers)}[5m])"
    return f"histogram_quantile(0.95, sum by ({q.by_model('le')}) ({rate}))"


def _drop(ratio: str, by: str, drop: float, enough: str, model_by: str) -> str:
    return (
        f"(\nmodelwatch:{ratio}:ratio_rate1h\n< on ({by})\n"
        f"modelwatch:{ratio}:ratio_rate1d - {num(drop)}\n)\nand on ({model_by})\n{enough}"
    )


def alerts(q: Queries) -> list[AlertRule]:
    """Every regression alert, in rule-file order."""
    from modelwatch.ops.rules import AlertRule

    r = _options(q)
    n = _Names(q)
    m, svc, a = q.model, q.svc, q.analysis
    by = q.by_model(a)
    per_label = f"{by}, {n.label}"
    scores_by = q.by_model(a, n.metric)
    enough_scores = (
        f"sum by ({scores_by}) (increase({q.sel(n.score + '_count')}[1h]))"
        f" >= {r.quality_min_scores}"
    )

    answers = q.sel(n.outcomes, f'{n.outcome}=~"tp|fn"')  # one per answer, over labels

    def enough_outcomes(by_: str) -> str:
        return f"sum by ({by_}) (increase({answers}[1h])) >= {r.outcome_min}"

    where = f"{{{{ $labels.{m} }}}} ({{{{ $labels.{a} }}}}) in {{{{ $labels.{svc} }}}}"
    label = f"label {{{{ $labels.{n.label} }}}} of {where}"
    drop = num(r.outcome_drop)
    out = [
        AlertRule(
            "ModelwatchQualityDrop",
            QUALITY,
            f"(\nmodelwatch:quality_score:mean1h\n< on ({scores_by})\n"
            f"modelwatch:quality_score:mean1d - {num(r.quality_drop)}\n)\n"
            f"and on ({scores_by})\n{enough_scores}",
            r.regression_for_s,
            "warning",
            f"{{{{ $labels.{n.metric} }}}} quality of {{{{ $labels.{m} }}}} dropped to {_V}",
            f"The mean {{{{ $labels.{n.metric} }}}} score of {where} over the last hour is "
            f"{_V}, more than {num(r.quality_drop)} below its mean of "
            "the last day.",
        ),
        AlertRule(
            "ModelwatchAccuracyDrop",
            QUALITY,
            _drop("quality_accuracy", by, r.outcome_drop, enough_outcomes(by), by),
            r.regression_for_s,
            "warning",
            f"Accuracy of {{{{ $labels.{m} }}}} dropped to {{{{ $value | humanizePercentage }}}}",
            f"The accuracy of {where} over the last hour is {{{{ $value | humanizePercentage }}}}, "
            f"more than {drop} below its accuracy over the last day (labelled outcomes).",
        ),
        AlertRule(
            "ModelwatchPrecisionDrop",
            QUALITY,
            _drop("quality_precision", per_label, r.outcome_drop, enough_outcomes(by), by),
            r.regression_for_s,
            "warning",
            f"Precision of {{{{ $labels.{m} }}}} for {{{{ $labels.{n.label} }}}} dropped to "
            "{{ $value | humanizePercentage }}",
            f"The precision for {label} over the last hour is "
            f"{{{{ $value | humanizePercentage }}}}, more than {drop} below the last day's.",
        ),
        AlertRule(
            "ModelwatchRecallDrop",
            QUALITY,
            _drop("quality_recall", per_label, r.outcome_drop, enough_outcomes(by), by),
            r.regression_for_s,
            "warning",
            f"Recall of {{{{ $labels.{m} }}}} for {{{{ $labels.{n.label} }}}} dropped to "
            "{{ $value | humanizePercentage }}",
            f"The recall for {label} over the last hour is "
            f"{{{{ $value | humanizePercentage }}}}, more than {drop} below the last day's.",
        ),
        AlertRule(
            "ModelwatchDriftDetected",
            QUALITY,
            f"max by ({svc}, {n.drift_name}, {m}, {n.feature}) ({q.sel(n.drift)})\n"
            f"> {num(r.drift_threshold)}",
            r.drift_for_s,
            "warning",
            f"Feature {{{{ $labels.{n.feature} }}}} of {{{{ $labels.{n.drift_name} }}}} drifted "
            f"(PSI {_V})",
            f"The population stability index of feature {{{{ $labels.{n.feature} }}}} in drift "
            f"monitor {{{{ $labels.{n.drift_name} }}}} (model {{{{ $labels.{m} }}}}, "
            f"{{{{ $labels.{svc} }}}}) is {_V}, above "
            f"{num(r.drift_threshold)}: recent data no longer look like the reference.",
        ),
        AlertRule(
            "ModelwatchModelAnomalous",
            QUALITY,
            f"max by ({by}, {n.signal}) ({q.sel(n.anomaly)})\n> {num(r.anomaly_threshold)}",
            r.anomaly_for_s,
            "warning",
            f"{{{{ $labels.{n.signal} }}}} of {{{{ $labels.{m} }}}} is anomalous (z {_V})",
            f"The {{{{ $labels.{n.signal} }}}} of {where} is {_V} robust "
            f"standard deviations above its learned baseline (threshold "
            f"{num(r.anomaly_threshold)}).",
        ),
        AlertRule(
            "ModelwatchCanaryRolledBack",
            QUALITY,
            f"sum by ({svc}, {q.router}, {n.backend}, {n.version}, {q.reason}) "
            f"(increase({q.sel(n.rollbacks)}[{format_duration(r.canary_window_s)}])) > 0",
            0,
            "warning",
            f"Canary {{{{ $labels.{n.backend} }}}} of router {{{{ $labels.{q.router} }}}} was "
            "rolled back",
            f"Candidate version {{{{ $labels.{n.version} }}}} ({{{{ $labels.{n.backend} }}}}) of "
            f"router {{{{ $labels.{q.router} }}}} in {{{{ $labels.{svc} }}}} regressed on "
            f"{{{{ $labels.{q.reason} }}}} and was rolled back automatically within the last "
            f"{format_duration(r.canary_window_s)}.",
        ),
    ]
    return out + _adaptive_alerts(q, r, AlertRule)


def _adaptive_alerts(q: Queries, r: RegressionOptions, rule: type[AlertRule]) -> list[AlertRule]:
    m, svc = q.model, q.svc
    out = []
    for name, what, series, floor, minimum in (
        (
            "ModelwatchErrorRateAnomalous",
            "error ratio",
            "modelwatch:error_ratio:rate5m",
            r.error_ratio_stddev_floor,
            r.error_ratio_min,
        ),
        (
            "ModelwatchLatencyAnomalous",
            "p95 latency",
            "modelwatch:latency_p95:rate5m",
            r.latency_stddev_floor_s,
            r.latency_min_s,
        ),
    ):
        z = f"({series} - {series}:avg1d)\n/ clamp_min({series}:stddev1d, {num(floor)})"
        out.append(
            rule(
                name,
                ADAPTIVE,
                f"(\n{z}\n) > {num(r.zscore_threshold)}\nand\n{series} > {num(minimum)}",
                r.zscore_for_s,
                "warning",
                f"{what.capitalize()} of {{{{ $labels.{m} }}}} is {_V} "
                "standard deviations above its day",
                f"The 5-minute {what} of model {{{{ $labels.{m} }}}} in {{{{ $labels.{svc} }}}} "
                f"is {_V} standard deviations above its average of the "
                f"last day (threshold {num(r.zscore_threshold)}, an adaptive threshold).",
                symptom=True,
            )
        )
    return out


_PANEL = "the *Model regressions* view (`modelwatch dashboard`) or the recording rules"

#: (meaning, confirm steps, actions, how to tell it is over) per alert
RUNBOOK_TEXT: Final[dict[str, tuple[str, tuple[str, ...], tuple[str, ...], str]]] = {
    "ModelwatchQualityDrop": (
        "The mean quality score (`modelwatch.quality.score`: evaluator scores or user "
        "ratings, 0..1) of this model and analysis over the last hour is lower than over the "
        "last day by more than the margin: answers got worse.",
        (
            "Query `modelwatch:quality_score:mean1h` and `:mean1d` for the model and metric.",
            "Check what changed in the hour: a model version (canary, provider update), a "
            "prompt template, or the inputs (the drift alerts).",
        ),
        (
            "Roll back the last model or prompt change; with a router canary, "
            "`router.rollback(name)`.",
            "If the inputs changed (drift), re-evaluate the model on the new traffic.",
        ),
        "The hourly mean is back within the margin of the daily one; the alert resolves.",
    ),
    "ModelwatchAccuracyDrop": (
        "Labelled feedback (`modelwatch.record_outcome`) says this model's accuracy over the "
        "last hour is lower than over the last day by more than the margin.",
        (
            "Query `modelwatch:quality_accuracy:ratio_rate1h` and `:ratio_rate1d`, then the "
            "per-label precision and recall to see which labels suffer.",
        ),
        (
            "Roll back the last model or prompt change; look for drift in the inputs.",
            "Check the labelling pipeline too: a change in how feedback is labelled looks "
            "the same.",
        ),
        "Hourly accuracy is back within the margin; the alert resolves.",
    ),
    "ModelwatchPrecisionDrop": (
        "For one label, the share of predictions of that label that were right dropped over "
        "the last hour: the model predicts it too often (false positives).",
        ("Query `modelwatch:quality_precision:ratio_rate1h` per label, and the outcome rates.",),
        ("Roll back the last model or prompt change; check the inputs for drift.",),
        "Hourly precision is back within the margin; the alert resolves.",
    ),
    "ModelwatchRecallDrop": (
        "For one label, the share of actual cases of that label the model found dropped over "
        "the last hour: it misses them (false negatives).",
        ("Query `modelwatch:quality_recall:ratio_rate1h` per label, and the outcome rates.",),
        ("Roll back the last model or prompt change; check the inputs for drift.",),
        "Hourly recall is back within the margin; the alert resolves.",
    ),
    "ModelwatchDriftDetected": (
        "A `modelwatch.Drift` monitor reports a population stability index above the "
        "threshold for a feature: the recent window of inputs (or outputs, token counts, "
        "latency) is distributed differently from the reference. Models degrade on data they "
        "were not built for.",
        (
            "In the service: `drift.score()` (PSI per feature), `drift.ks()` (KS statistic "
            "and p-value of numeric features).",
            f"Compare with the quality and outcome alerts in {_PANEL}.",
        ),
        (
            "Find where the new traffic comes from (a new client, language, document type).",
            "If the change is legitimate and lasting, re-evaluate the model on it and reset "
            "the monitor's reference (a new `Drift` with `reference=` from recent data).",
        ),
        "The PSI falls back under the threshold; the alert resolves.",
    ),
    "ModelwatchModelAnomalous": (
        "The model's latency or error rate is far from its learned baseline "
        "(`modelwatch.anomaly.score`: a robust z-score against the median and MAD of the "
        "same hour of day, or of the last day).",
        (
            "The latency and error panels of the model drill-down for the last hours.",
            "In the service: `modelwatch.capture.baseline.anomaly_scores()`.",
        ),
        (
            "Treat it like a latency or error-rate alert that knows the model's normal: check "
            "the provider, recent deploys and input sizes.",
            "Opt in to `AvoidAnomalous` ordering to move an anomalous backend behind the others.",
        ),
        "The score falls under the threshold; the alert resolves.",
    ),
    "ModelwatchCanaryRolledBack": (
        "A candidate model version (`Backend(canary=Canary(...))`) was worse than the stable "
        "one by a statistical test (error ratio, p95 latency, quality or cost per call) and "
        "the router rolled it back: it takes no traffic until its cooldown ends.",
        (
            "The `modelwatch.canary.rollback` log event and span event carry the figures "
            "(signal, candidate and stable values, z, sample sizes).",
            "In the service: `router.canary_status()`.",
        ),
        (
            "Fix the candidate before the cooldown ends, or remove its `canary=` to keep it "
            "out; `router.promote(name)` overrides the decision if the regression is accepted.",
        ),
        "The rollback leaves the alert's window; the alert resolves.",
    ),
    "ModelwatchErrorRateAnomalous": (
        "The 5-minute error ratio of the model is several standard deviations above its "
        "average of the last day: an adaptive threshold, for models whose normal error rate "
        "is not the fixed threshold's.",
        (
            "Query `modelwatch:error_ratio:rate5m` against `:avg1d` and `:stddev1d`.",
            "The *Errors by kind* panel splits the failures.",
        ),
        ("Act as for the error-rate alert: provider status, recent deploys, error kinds.",),
        "The z-score falls under the threshold; the alert resolves.",
    ),
    "ModelwatchLatencyAnomalous": (
        "The 5-minute p95 latency of successful calls is several standard deviations above "
        "its average of the last day (an adaptive threshold).",
        ("Query `modelwatch:latency_p95:rate5m` against `:avg1d` and `:stddev1d`.",),
        ("Act as for the latency alerts: provider status, input sizes, cold starts.",),
        "The z-score falls under the threshold; the alert resolves.",
    ),
}
