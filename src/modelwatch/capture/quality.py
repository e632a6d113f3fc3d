"""Quality scores and labelled outcomes: how good the answers are, not only how fast.

>>> import modelwatch
>>> modelwatch.record_quality(0.4, model="google/flan-t5-large", metric="user_rating")
>>> modelwatch.record_outcome(model="clf", predicted="bug", actual="no_bug",
...                           labels=("bug", "no_bug"))

A score is a number in 0..1 recorded into the ``modelwatch.quality.score`` histogram, per model,
analysis type and ``modelwatch.quality.metric`` (``relevance``, ``user_rating``...). Inside a
monitored call, :meth:`modelwatch.Call.record_quality` takes the call's model and analysis.

An outcome is one labelled answer: for every declared label it counts one confusion-matrix
cell (``tp``, ``fp``, ``fn`` or ``tn``) into ``modelwatch.quality.outcomes``, so accuracy,
precision, recall and F1 per model, analysis and label are PromQL ratios (the generated
recording rules compute them). ``predicted``/``actual`` may be one label or a collection of
labels (multi-label answers). Labels are declared with each call (``labels=``), at most
:data:`MAX_LABELS` of them; a value outside the declared set counts under ``_OTHER``, so free
text can never become a label. Every registry here is bounded: past
:data:`MAX_SERIES` attribute sets, new ones fold into ``otel.metric.overflow=true``.

Quality listeners (the canary controller) see every score with the call it belongs to.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Final

from modelwatch import semconv
from modelwatch._safety import guard
from modelwatch.capture._bounded import OVERFLOW_ATTRIBUTES, BoundedKeys
from modelwatch.capture._telemetry import telemetry

if TYPE_CHECKING:
    from modelwatch.capture.call import Call

__all__ = ["MAX_LABELS", "MAX_SERIES", "add_quality_listener", "record_outcome", "record_quality"]

#: the most labels one outcome may declare
MAX_LABELS: Final = 32
#: the most (model, analysis, metric) and (model, analysis, label) sets kept per registry
MAX_SERIES: Final = 1000
DEFAULT_METRIC: Final = "quality"

#: ``listener(score, metric, model, analysis, version, call)``
QualityListener = Callable[[float, str, str, "str | None", "str | None", "Call | None"], None]
_listeners: list[QualityListener] = []
_score_keys = BoundedKeys("modelwatch.quality.score", MAX_SERIES)
_label_keys = BoundedKeys("modelwatch.quality.outcomes", MAX_SERIES)


def add_quality_listener(listener: QualityListener) -> None:
    """Call ``listener`` with every recorded score (idempotent per listener)."""
    if listener not in _listeners:
        _listeners.append(listener)


def _check_score(score: object, metric: object) -> float:
    if (
        isinstance(score, bool)
        or not isinstance(score, (int, float))
        or math.isnan(score)
        or not 0.0 <= score <= 1.0
    ):
        raise ValueError(f"quality score must be a number in 0..1, got {score!r}")
    if not isinstance(metric, str) or not metric.strip():
        raise ValueError(f"quality metric must be a non-empty str, got {metric!r}")
    return float(score)


def _check_model(model: object, analysis: object) -> None:
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a non-empty str, got {model!r}")
    if analysis is not None and not isinstance(analysis, str):
        raise ValueError(f"analysis must be a str or None, got {analysis!r}")


def _score(
    score: float,
    metric: str,
    *,
    model: str,
    analysis: str | None,
    version: str | None,
    call: Call | None,
) -> None:
    attrs: dict[str, Any] = {semconv.GEN_AI_REQUEST_MODEL: model, semconv.QUALITY_METRIC: metric}
    if analysis is not None:
        attrs[semconv.MODELWATCH_ANALYSIS] = analysis
    if not _score_keys.admit((model, analysis, metric)):
        attrs = dict(OVERFLOW_ATTRIBUTES)
    telemetry().instrument(semconv.QUALITY_SCORE).record(score, attrs)
    for listener in list(_listeners):
        with guard("quality.listener"):
            listener(score, metric, model, analysis, version, call)


def record_quality(
    score: float,
    *,
    model: str,
    analysis: str | None = None,
    metric: str = DEFAULT_METRIC,
    version: str | None = None,
) -> None:
    """Record a 0..1 quality score that arrived after the call (a rating, an evaluation).

    ``version`` names the backend version the answer came from (``Backend(version=...)``),
    so a canary comparison sees late feedback too. Raises ``ValueError`` for a score outside
    0..1 or a missing model (bad input); never raises for a telemetry failure.
    """
    value = _check_score(score, metric)
    _check_model(model, analysis)
    with guard("record_quality"):
        _score(value, metric, model=model, analysis=analysis, version=version, call=None)


def record_call_quality(call: Call, score: float, metric: str) -> None:
    """:meth:`Call.record_quality`: the score of this call's answer, with its model and
    analysis (agent and tool steps, which have no model, record nothing)."""
    value = _check_score(score, metric)
    with guard("record_quality"):
        spec = call._spec
        if spec.model is None:
            return
        _score(value, metric, model=spec.model, analysis=spec.analysis, version=None, call=call)


def _as_set(value: object, name: str) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset((value,))
    if isinstance(value, Collection) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise ValueError(f"{name} must be a label (str) or a collection of labels, got {value!r}")


def _check_labels(labels: object) -> tuple[str, ...]:
    if isinstance(labels, str) or not isinstance(labels, Collection) or not labels:
        raise ValueError(f"labels must be a non-empty tuple of str, got {labels!r}")
    out = tuple(labels)
    if not all(isinstance(x, str) and x for x in out) or len(set(out)) != len(out):
        raise ValueError(f"labels must be distinct non-empty str, got {labels!r}")
    if len(out) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels may be declared, got {len(out)}")
    return out


def confusion(
    predicted: frozenset[str], actual: frozenset[str], labels: tuple[str, ...]
) -> list[tuple[str, str]]:
    """``(label, outcome)`` for each declared label (and ``_OTHER`` when a value is outside
    them): ``tp`` predicted and actual, ``fp`` predicted only, ``fn`` actual only, ``tn``
    neither."""
    declared = set(labels)
    cells = []
    other = (predicted | actual) - declared
    for label in (*labels, semconv.LABEL_OTHER) if other else labels:
        if label == semconv.LABEL_OTHER:
            p, a = bool(predicted - declared), bool(actual - declared)
        else:
            p, a = label in predicted, label in actual
        cells.append((label, ("tp" if a else "fp") if p else ("fn" if a else "tn")))
    return cells


def record_outcome(
    *,
    model: str,
    predicted: str | Collection[str],
    actual: str | Collection[str],
    labels: Collection[str],
    analysis: str | None = None,
) -> None:
    """Count one labelled answer: a tp/fp/fn/tn cell per declared label.

    >>> record_outcome(model="clf", predicted="bug", actual="bug", labels=("bug", "no_bug"))

    counts ``tp`` for ``bug`` and ``tn`` for ``no_bug``. Raises ``ValueError`` for malformed
    labels or values (bad input); never raises for a telemetry failure.
    """
    _check_model(model, analysis)
    declared = _check_labels(labels)
    p, a = _as_set(predicted, "predicted"), _as_set(actual, "actual")
    with guard("record_outcome"):
        counter = telemetry().instrument(semconv.QUALITY_OUTCOMES)
        base: dict[str, Any] = {semconv.GEN_AI_REQUEST_MODEL: model}
        if analysis is not None:
            base[semconv.MODELWATCH_ANALYSIS] = analysis
        for label, outcome in confusion(p, a, declared):
            if _label_keys.admit((model, analysis, label)):
                attrs = {**base, semconv.LABEL: label, semconv.OUTCOME: outcome}
            else:
                attrs = {**OVERFLOW_ATTRIBUTES, semconv.OUTCOME: outcome}
            counter.add(1, attrs)
