""":class:`CallSpec`: what a declaration fixes once, and the metric attribute sets of its calls.

A call's metric attributes are its spec's, plus ``error.type`` when it failed, plus
``gen_ai.response.model`` when the answer named its model, plus ``modelwatch.origin`` for a
probe. Each distinct combination is built once per spec and kept (bounded), with the two
token-usage sets derived from it, so a call builds no dict at its end and the deferred
records of many calls share one attributes object (the drain groups records by identity).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from opentelemetry.trace import SpanKind

from modelwatch import semconv
from modelwatch.capture._bounded import OVERFLOW_KEY, BoundedKeys

#: The metric attribute sets kept per spec beyond its own (error kinds, response models,
#: probe); past it, a call builds its sets as it ends (the same values, a new dict).
ATTRIBUTE_SETS_PER_SPEC: Final = 64

#: ``(duration attributes, input-token attributes, output-token attributes)``
AttributeSets = tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]

INFLIGHT_KEYS: Final = (
    semconv.GEN_AI_OPERATION_NAME,
    semconv.GEN_AI_PROVIDER_NAME,
    semconv.GEN_AI_REQUEST_MODEL,
    semconv.MODELWATCH_ANALYSIS,
)

#: Every in-flight key seen (in-flight gauges report 0 for a key once seen, not nothing),
#: bounded: past the limit, new keys share the overflow set.
seen_inflight_keys = BoundedKeys("in-flight", overflow=OVERFLOW_KEY)


def _inflight_key(metric_attributes: Mapping[str, Any], is_model: bool) -> tuple[Any, ...]:
    """The low-cardinality in-flight key of a declaration (admitted to the bounded set)."""
    key = tuple(metric_attributes.get(k) for k in INFLIGHT_KEYS)
    return seen_inflight_keys.fold(key) if is_model else key


def _with_tokens(attributes: Mapping[str, Any]) -> AttributeSets:
    return (
        attributes,
        {**attributes, semconv.GEN_AI_TOKEN_TYPE: "input"},
        {**attributes, semconv.GEN_AI_TOKEN_TYPE: "output"},
    )


class CallSpec:
    """What a ``monitored(...)`` or ``agent_step(...)`` declaration fixes once, at decoration.

    Precomputes the span name and the span and metric attribute dicts, so the hot path
    builds nothing it can reuse. Build one with :func:`modelwatch.lifecycle.model_spec` or
    :func:`modelwatch.lifecycle.agent_spec` (or take ``monitored(...).spec``), once per
    distinct model/operation/endpoint, and start calls from it with
    :func:`modelwatch.lifecycle.start`. Treat it as immutable.
    """

    __slots__ = (
        "_sets",
        "_sets_lock",
        "analysis",
        "attribute_sets",
        "cost_key",
        "duration_instrument",
        "inflight_key",
        "is_model",
        "metric_attributes",
        "model",
        "operation",
        "provider",
        "span_attributes",
        "span_kind",
        "span_name",
        "usage",
    )

    def __init__(
        self,
        *,
        span_name: str,
        span_kind: SpanKind,
        span_attributes: dict[str, Any],
        metric_attributes: dict[str, Any],
        duration_instrument: semconv.MetricSpec,
        is_model: bool,
        model: str | None = None,
        provider: str | None = None,
        operation: str = semconv.OPERATION_CHAT,
        analysis: str | None = None,
        usage: Callable[[Any], Any] | None = None,
    ) -> None:
        self.span_name = span_name
        self.span_kind = span_kind
        self.span_attributes = span_attributes
        self.metric_attributes = metric_attributes
        self.duration_instrument = duration_instrument
        self.is_model = is_model
        self.model = model
        self.provider = provider
        self.operation = operation
        self.analysis = analysis
        self.usage = usage
        self.inflight_key = _inflight_key(metric_attributes, is_model)
        self.cost_key = tuple(
            (k, v) for k, v in metric_attributes.items() if k in semconv.COST.attributes
        )
        #: the metric attribute sets of a plain successful call (no response model known)
        self.attribute_sets: AttributeSets = _with_tokens(metric_attributes)
        self._sets: dict[tuple[bool, str | None, str | None], AttributeSets] = {}
        self._sets_lock = threading.Lock()

    def attribute_sets_for(
        self, probe: bool, kind: str | None, response_model: str | None
    ) -> AttributeSets:
        """The metric attribute sets of a call that was a probe, failed with ``kind``, or was
        answered by ``response_model`` (built once per combination, bounded)."""
        key = (probe, kind, response_model)
        found = self._sets.get(key)
        if found is not None:
            return found
        extra = dict(self.metric_attributes)
        if probe:
            extra[semconv.MODELWATCH_ORIGIN] = semconv.ORIGIN_PROBE
        if kind is not None:
            extra[semconv.ERROR_TYPE] = kind
        if response_model is not None:
            extra[semconv.GEN_AI_RESPONSE_MODEL] = response_model
        made = _with_tokens(extra)
        with self._sets_lock:
            if len(self._sets) < ATTRIBUTE_SETS_PER_SPEC:
                made = self._sets.setdefault(key, made)
        return made
