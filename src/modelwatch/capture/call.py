"""The running call: :class:`Call`, :func:`current_call`, and the in-flight registry.

A :class:`Call` is created when a monitored block starts and ended exactly once. It owns the
span, accumulates usage, and records the metrics at its end. Everything here runs inside the
host's calls, so every step is guarded: a failure costs telemetry, never the host's result.

The nested-call rule: a monitored call started while another monitored call *of the same
model* is current is a *nested* call. It gets its own span, but its usage and response model
are forwarded to the outermost call of that model (the *owner*), which alone records the
metrics. One logical model call is therefore one metric observation, and tokens
and cost are never counted twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from contextvars import ContextVar, Token
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext

from modelwatch import semconv
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture._bounded import OVERFLOW_ATTRIBUTES, OVERFLOW_KEY
from modelwatch.capture._details import CallDetails
from modelwatch.capture._record import LISTENERS, coerce_usage, notify, record_error_on_span
from modelwatch.capture._spec import INFLIGHT_KEYS, AttributeSets, CallSpec, seen_inflight_keys
from modelwatch.capture._telemetry import Attributes, register_observable, telemetry
from modelwatch.capture.budget import charge
from modelwatch.capture.cost import cost_of
from modelwatch.capture.origin import _PROBE
from modelwatch.capture.usage import Usage, extract_usage

#: Result types that carry no usage: skip extraction (unless a ``usage=`` callable is given).
_NO_USAGE: Final[frozenset[type]] = frozenset({str, bytes, type(None), int, float, bool})
#: ``Call.stop()`` without a result: nothing to read usage from.
_NO_RESULT: Final[Any] = object()

_coerce_usage = coerce_usage
_record_error_on_span = record_error_on_span  # a module global: tests replace it

__all__ = ["Call", "CallSpec", "current_call", "start_call"]

_CURRENT: ContextVar[Call | None] = ContextVar("modelwatch_current_call", default=None)


def current_call() -> Call | None:
    """The :class:`Call` of the innermost monitored block running in this context, or ``None``.

    >>> import modelwatch
    >>> modelwatch.current_call() is None
    True
    """
    return _CURRENT.get()


def _classify(exc: BaseException) -> str:
    from modelwatch._classify import classify

    kind: str = classify(exc)
    return kind


# ----------------------------------------------------------------------- in-flight registry
_inflight: dict[int, Call] = {}


def _inflight_groups() -> dict[tuple[Any, ...], tuple[int, float]]:
    """(count, oldest start) of running owner calls, per low-cardinality key."""
    groups: dict[tuple[Any, ...], tuple[int, float]] = {}
    for call in list(_inflight.values()):
        key = call._spec.inflight_key
        count, oldest = groups.get(key, (0, call._start))
        groups[key] = (count + 1, min(oldest, call._start))
    return groups


def _key_attributes(key: tuple[Any, ...]) -> Attributes:
    if key is OVERFLOW_KEY:
        return OVERFLOW_ATTRIBUTES
    return {k: v for k, v in zip(INFLIGHT_KEYS, key, strict=True) if v is not None}


def _observe_in_flight() -> Iterable[tuple[float, Attributes]]:
    groups = _inflight_groups()
    for key in seen_inflight_keys.snapshot():
        count, _ = groups.get(key, (0, 0.0))
        yield float(count), _key_attributes(key)


def _observe_oldest() -> Iterable[tuple[float, Attributes]]:
    groups = _inflight_groups()
    now = time.perf_counter()
    for key in seen_inflight_keys.snapshot():
        entry = groups.get(key)
        yield (now - entry[1] if entry else 0.0), _key_attributes(key)


register_observable(semconv.CALLS_IN_FLIGHT, _observe_in_flight)
register_observable(semconv.CALLS_OLDEST_IN_FLIGHT, _observe_oldest)


class Call(CallDetails):
    """One running monitored call (a model call, or an agent or tool step).

    Obtain it from ``with modelwatch.monitored(...) as call`` or :func:`current_call`.
    All methods are safe to call at any time and never raise into your code.
    """

    __slots__ = (
        "__weakref__",
        "_call_token",
        "_child_input",
        "_child_output",
        "_ctx_token",
        "_error_kind",
        "_first_chunk_at",
        "_last_chunk_at",
        "_once",
        "_owner",
        "_probe",
        "_spec",
        "_start",
    )

    def __init__(self, spec: CallSpec) -> None:
        self._spec = spec
        self._span: Span | None = None
        self._ctx_token: Token[Any] | None = None
        self._call_token: Token[Call | None] | None = None
        self._owner: Call | None = None
        self._probe = False
        self._start = 0.0
        self._once = [True]
        self._error_kind: str | None = None
        self._first_chunk_at: float | None = None
        self._last_chunk_at = 0.0
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None
        self._child_input: int | None = None
        self._child_output: int | None = None
        self._usage_explicit = False
        self._response_model: str | None = None
        self._pending: dict[str, Any] | None = None

    # ------------------------------------------------------------------ public
    @property
    def model(self) -> str | None:
        """The requested model (``gen_ai.request.model``), or ``None`` for agent/tool steps."""
        return self._spec.model

    @property
    def input_tokens(self) -> int | None:
        """Input tokens recorded so far (own or forwarded by nested calls)."""
        return self._input_tokens if self._input_tokens is not None else self._child_input

    @property
    def output_tokens(self) -> int | None:
        """Output tokens recorded so far (own or forwarded by nested calls)."""
        return self._output_tokens if self._output_tokens is not None else self._child_output

    @property
    def response_model(self) -> str | None:
        """The model that answered, when known."""
        return self._response_model

    @property
    def span_context(self) -> SpanContext | None:
        """The context of this call's span (to link to it), or ``None`` if it has none."""
        span = self._span
        return span.get_span_context() if span is not None else None

    @property
    def error_kind(self) -> str | None:
        """The error kind (``error.type``) once the call has failed, else ``None``."""
        return self._error_kind

    @property
    def cost(self) -> float | None:
        """USD cost from the price table for the usage so far, or ``None`` if unpriced."""
        return _price(self._spec.model, self.input_tokens, self.output_tokens)

    def record_quality(self, score: float, metric: str = "quality") -> None:
        """Record a 0..1 quality score of this call's answer (``modelwatch.quality.score``).

        Raises ``ValueError`` for a score outside 0..1; see :mod:`modelwatch.capture.quality`.
        """
        from modelwatch.capture.quality import record_call_quality

        record_call_quality(self, score, metric)

    # ------------------------------------------------------------------ lifecycle
    def detach(self) -> None:
        """Stop being the current call (and span) in this context; idempotent.

        :func:`~modelwatch.lifecycle.start` makes the call current so that work done inside
        it (nested calls, the client's own spans) is its child. Detach in the context that
        started the call, before handing the call to code that runs elsewhere (a stream
        consumer, another thread). :meth:`stop` and :meth:`fail` detach first themselves.
        """
        self._detach()

    def stop(self, result: Any = _NO_RESULT, *, closed: bool = False) -> None:
        """End the call as a success, exactly once (later ``stop``/``fail`` do nothing).

        Detaches, reads token usage and the response model from ``result`` when given
        (unless usage was recorded by hand, or ``result`` is a plain value), records the
        metrics and ends the span. ``closed=True`` ends a stream the consumer stopped
        reading early (``modelwatch.stream=true`` marks it cut short). Never raises.
        """
        self._detach()
        if result is not _NO_RESULT and (
            self._spec.usage is not None or type(result) not in _NO_USAGE
        ):
            try:
                self._usage_from_result(result)
            except Exception as exc:  # a try, not guard(): this runs on every call
                report_internal_error("usage", exc)
        self._end(stream_closed=closed)

    def fail(self, exc: BaseException) -> None:
        """End the call as a failure, exactly once: ``error.type`` from :func:`classify`,
        the error status and the scrubbed exception event on the span. Never raises; the
        caller re-raises ``exc`` itself."""
        self._detach()
        self._end(exc)

    def record_chunk(self, chunk: Any) -> None:
        """A stream produced ``chunk``: the first one is timed (``time_to_first_chunk``),
        and usage is read from any chunk that carries it. Never raises."""
        try:
            self._on_chunk(chunk)
        except Exception as exc:  # inline: a guard() context manager per chunk costs ~1 µs
            report_internal_error("stream_chunk", exc)

    # ------------------------------------------------------------------ internal
    def _absorb_usage(self, found: Usage) -> None:
        if found.input_tokens is not None or found.output_tokens is not None:
            self._set_usage(found.input_tokens, found.output_tokens, explicit=False)
        if found.details is not None:
            self._set_details(*found.details)
        if found.response_model is not None and self._response_model is None:
            self._response_model = found.response_model
            self._put(semconv.GEN_AI_RESPONSE_MODEL, found.response_model)

    def _usage_from_result(self, result: Any) -> None:
        if self._usage_explicit:
            return
        extractor = self._spec.usage
        if extractor is None:
            found = extract_usage(result)
        else:
            found = _coerce_usage(extractor(result))
        if found:
            self._absorb_usage(found)

    def _on_chunk(self, chunk: Any) -> None:
        """A stream produced a chunk: time the first one and the gap before each later one,
        pick up usage from any."""
        now = time.perf_counter()
        if self._first_chunk_at is not None:
            if self._owner is None and self._spec.is_model:
                tel = telemetry()
                tel.defer(
                    tel.instrument(semconv.TIME_PER_OUTPUT_CHUNK),
                    now - self._last_chunk_at,
                    self._spec.metric_attributes,
                    self._span,
                )
            self._last_chunk_at = now
        else:
            self._first_chunk_at = self._last_chunk_at = now
            with guard("first_chunk"):
                if self._span is not None:
                    self._span.add_event(semconv.EVENT_FIRST_CHUNK)
                if self._owner is None and self._spec.is_model:
                    tel = telemetry()
                    tel.defer(
                        tel.time_to_first_chunk,
                        now - self._start,
                        self._spec.metric_attributes,
                        self._span,
                    )
        if self._spec.is_model and not isinstance(chunk, (str, bytes)):
            with guard("chunk_usage"):
                self._usage_from_result(chunk)

    def _detach(self) -> None:
        """Stop being the current call in this context (idempotent)."""
        token = self._call_token
        if token is not None:
            self._call_token = None
            try:
                _CURRENT.reset(token)
            except (ValueError, RuntimeError) as exc:
                report_internal_error("detach_call", exc)
        ctx_token = self._ctx_token
        if ctx_token is not None:
            self._ctx_token = None
            try:
                otel_context.detach(ctx_token)
            except Exception as exc:
                report_internal_error("detach_context", exc)

    def _end(self, exc: BaseException | None = None, *, stream_closed: bool = False) -> None:
        """End the call exactly once: span status, metrics, forwarding to the owner."""
        try:
            self._once.pop()  # list.pop is atomic: a consumer and the GC cannot both end it
        except IndexError:
            return
        end = time.perf_counter()
        _inflight.pop(id(self), None)
        cost = None
        try:
            cost = self._finish(exc, end, stream_closed)
        except Exception as internal:
            report_internal_error("end_call", internal)
        span = self._span
        if span is not None:
            pending = self._pending
            if pending:  # recording failed before the attributes were written
                self._pending = None
                with guard("end_attributes"):
                    span.set_attributes(pending)
            # ended here, once, even when recording failed: a host span processor whose
            # on_end raises must not make us end the span a second time
            try:
                span.end()
            except Exception as internal:
                report_internal_error("end_span", internal)
        if LISTENERS and self._owner is None:
            notify(self, end - self._start, cost, stream_closed)

    def _finish(self, exc: BaseException | None, end: float, stream_closed: bool) -> float | None:
        spec = self._spec
        span = self._span
        kind = None
        if exc is not None:
            kind = _classify(exc)
            self._error_kind = kind
        input_tokens, output_tokens = self.input_tokens, self.output_tokens
        owner = self._owner
        cost = None
        if owner is not None:  # nested: forward, record no metrics of our own
            owner._absorb_usage(Usage(input_tokens, output_tokens, self._response_model))
        else:
            tel = telemetry()
            attrs, input_attrs, output_attrs = self._metric_attributes(kind)
            context = span.get_span_context() if span is not None else None
            defer = tel.defer_context
            defer(tel.instrument(spec.duration_instrument), end - self._start, attrs, context)
            if spec.is_model:
                if input_tokens is not None:
                    defer(tel.tokens, input_tokens, input_attrs, context)
                if output_tokens is not None:
                    defer(tel.tokens, output_tokens, output_attrs, context)
                # a failed call is priced only when it reported usage (providers bill those)
                if kind is None or input_tokens is not None or output_tokens is not None:
                    cost = _price(spec.model, input_tokens, output_tokens)
                if cost:
                    tel.add_cost(spec.cost_key, cost)
                    charge(cost, spec.metric_attributes)
        if span is not None:
            pending = self._pending
            self._pending = None  # from now on, writes go to the span directly
            if pending is None:  # nothing recorded during the call (or not recording)
                if stream_closed:
                    span.set_attribute(semconv.MODELWATCH_STREAM, True)
                if kind is None and cost is not None:
                    span.set_attribute(semconv.MODELWATCH_COST, cost)
            else:  # in the order recorded: later ones override earlier ones
                if stream_closed:
                    pending[semconv.MODELWATCH_STREAM] = True
                if kind is None and cost is not None:
                    pending[semconv.MODELWATCH_COST] = cost
                span.set_attributes(pending)
            if kind is not None:
                _record_error_on_span(span, exc, kind)  # type: ignore[arg-type]
        return cost

    def _metric_attributes(self, kind: str | None) -> AttributeSets:
        """Duration, input-token and output-token metric attributes of this call (shared
        dicts, built once per spec and combination: the deferred drain groups by identity)."""
        spec = self._spec
        if kind is None and self._response_model is None and not self._probe:
            return spec.attribute_sets  # the common case
        return spec.attribute_sets_for(self._probe, kind, self._response_model)


def _price(model: str | None, input_tokens: int | None, output_tokens: int | None) -> float | None:
    if model is None:
        return None
    try:
        return cost_of(model, input_tokens, output_tokens)
    except Exception as exc:
        report_internal_error("cost", exc)
        return None


def _reset_after_fork() -> None:
    """A forked child starts with no running calls: the parent's in-flight calls are not
    running there, and would look hung."""
    _inflight.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def start_call(spec: CallSpec) -> Call:
    """Start a call from ``spec`` and make it current: span, context, in-flight entry.

    Never raises; returns the :class:`Call`, to be ended with :meth:`Call.stop` or
    :meth:`Call.fail` (public as :func:`modelwatch.lifecycle.start`).
    """
    call = Call(spec)
    try:
        parent = _CURRENT.get()
        if _PROBE.get():
            call._probe = True
        if spec.is_model and parent is not None and parent._spec.model == spec.model:
            call._owner = parent._owner or parent
        tel = telemetry()
        span = tel.tracer.start_span(
            spec.span_name, kind=spec.span_kind, attributes=spec.span_attributes
        )
        call._span = span
        if call._probe:
            span.set_attribute(semconv.MODELWATCH_ORIGIN, semconv.ORIGIN_PROBE)
        call._ctx_token = otel_context.attach(trace.set_span_in_context(span))
        call._start = time.perf_counter()
        if call._owner is None and spec.is_model:
            _inflight[id(call)] = call
    except Exception as exc:
        report_internal_error("start_call", exc)
        if call._start == 0.0:
            call._start = time.perf_counter()
    try:
        call._call_token = _CURRENT.set(call)
    except Exception as exc:  # pragma: no cover - ContextVar.set does not fail in practice
        report_internal_error("start_call", exc)
    return call
