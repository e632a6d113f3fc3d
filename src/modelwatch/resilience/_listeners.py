"""The two default listeners of :mod:`modelwatch.resilience.hooks`: OpenTelemetry and structlog.

* :func:`otel_listener`: ``modelwatch.circuit.transitions`` and ``modelwatch.failovers``
  points, and span events (on the event's span, else the current one) for transitions,
  rejections, failovers, retries and hedges.
* :class:`LogListener`: one structlog line for the first transition of a breaker to each
  state, then at most one summary line per interval with the counts of the repeats, so an
  outage whose probes fail every few seconds logs a handful of lines instead of two per
  probe; a close is always logged, after the summary of what it ends.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from opentelemetry import trace

from modelwatch import semconv
from modelwatch._clock import SYSTEM_CLOCK, TimeSource
from modelwatch.capture._bounded import CARDINALITY_LIMIT
from modelwatch.capture._telemetry import telemetry
from modelwatch.resilience.hooks import (
    BreakerTransition,
    CallRejected,
    Event,
    Failover,
    Hedge,
    Retry,
)

__all__ = ["LOG_EVENTS", "SUMMARY_EVENT", "LogListener", "otel_listener"]

logger = structlog.get_logger("modelwatch")

#: The structlog event of a transition to each state.
LOG_EVENTS: Final = {
    "open": "modelwatch.circuit.opened",
    "half_open": "modelwatch.circuit.half_open",
    "closed": "modelwatch.circuit.closed",
}
#: The structlog event summarising the transitions not logged one by one.
SUMMARY_EVENT: Final = "modelwatch.circuit.flapping"


def _present(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if v is not None}


def _span_event(span: Any, name: str, attrs: dict[str, Any]) -> None:
    target = span if span is not None else trace.get_current_span()
    if target.is_recording():
        target.add_event(name, attrs)


#: ``(router, from, to, reason) -> attributes``: few combinations, built once each
_failover_attrs: dict[tuple[str, str, str, str, str | None], dict[str, str]] = {}


def otel_listener(event: Event) -> None:
    """Record ``event`` as OpenTelemetry metrics and span events."""
    if isinstance(event, BreakerTransition):
        attrs = _present(
            {
                semconv.MODELWATCH_CIRCUIT: event.breaker,
                semconv.MODELWATCH_ROUTER: event.router,
                semconv.GEN_AI_REQUEST_MODEL: event.model,
                semconv.FROM: event.from_state,
                semconv.TO: event.to_state,
                semconv.REASON: event.reason,
            }
        )
        telemetry().instrument(semconv.CIRCUIT_TRANSITIONS).add(1, attrs)
        _span_event(None, semconv.EVENT_STATE_CHANGE, attrs)
    elif isinstance(event, CallRejected):
        _span_event(
            event.span,
            semconv.EVENT_REJECTED,
            _present(
                {
                    semconv.MODELWATCH_CIRCUIT: event.breaker,
                    semconv.MODELWATCH_ROUTER: event.router,
                    semconv.GEN_AI_REQUEST_MODEL: event.model,
                    semconv.REASON: event.reason,
                    semconv.MODELWATCH_RETRY_AFTER: event.retry_after_s or 0.0,
                }
            ),
        )
    elif isinstance(event, Failover):
        key = (event.router, event.from_model, event.to_model, event.reason, event.tier)
        fattrs = _failover_attrs.get(key)
        if fattrs is None:
            fattrs = {
                semconv.MODELWATCH_ROUTER: event.router,
                semconv.FROM: event.from_model,
                semconv.TO: event.to_model,
                semconv.REASON: event.reason,
            }
            if event.tier is not None:
                fattrs[semconv.MODELWATCH_TIER] = event.tier
            if len(_failover_attrs) < CARDINALITY_LIMIT:
                _failover_attrs[key] = fattrs
        telemetry().instrument(semconv.FAILOVERS).add(1, fattrs)
        _span_event(event.span, semconv.EVENT_FAILOVER, fattrs)
    elif isinstance(event, Retry):
        _span_event(
            event.span,
            semconv.EVENT_RETRY,
            {
                semconv.GEN_AI_REQUEST_MODEL: event.model,
                semconv.MODELWATCH_ATTEMPT: event.attempt,
                semconv.MODELWATCH_WAIT: event.wait_s,
                semconv.REASON: event.reason,
            },
        )
    elif isinstance(event, Hedge):
        _span_event(
            event.span,
            "modelwatch.hedge",
            {
                semconv.GEN_AI_REQUEST_MODEL: event.model,
                semconv.TO: event.backup_model,
                semconv.MODELWATCH_WAIT: event.delay_s,
            },
        )


@dataclass
class _Quiet:
    """Transitions of one breaker held back since ``since`` (monotonic seconds)."""

    since: float
    logged: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    last: BreakerTransition | None = None


class LogListener:
    """Breaker transitions as structlog lines (opened: error, half-open: warning, closed:
    info), summarised: the first transition of a breaker to each state is logged; repeats
    within ``interval_s`` are counted and logged as one ``modelwatch.circuit.flapping`` line
    with the counts when the interval has passed (or when the breaker closes, which is
    always logged). ``clock`` is injectable for tests."""

    def __init__(self, interval_s: float = 60.0, clock: TimeSource = SYSTEM_CLOCK) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._quiet: dict[str, _Quiet] = {}

    def __call__(self, event: Event) -> None:
        """Log (or count) a breaker transition; other events are not logged."""
        if not isinstance(event, BreakerTransition):
            return
        now = self._clock.monotonic()
        to = event.to_state
        with self._lock:
            held = self._quiet.get(event.breaker)
            if held is not None and to != "closed" and now - held.since < self.interval_s:
                if to in held.logged:
                    held.counts[to] += 1
                    held.last = event
                    return
                held.logged.add(to)  # the first of its kind in this window: logged as it is
                held = None
            elif to == "closed":
                self._quiet.pop(event.breaker, None)
            elif len(self._quiet) < CARDINALITY_LIMIT:
                self._quiet[event.breaker] = _Quiet(now, {to} | (held.logged if held else set()))
        if held is not None and held.counts:
            self._summary(event if to != "closed" else held.last, held, now)
            if to != "closed":
                return  # this transition is counted in the summary
        self._line(event)

    def _summary(self, last: BreakerTransition | None, held: _Quiet, now: float) -> None:
        if last is None:
            return
        if last is not held.last:
            held.counts[last.to_state] += 1
        logger.warning(
            SUMMARY_EVENT,
            circuit=last.breaker,
            router=last.router,
            model=last.model,
            state=last.to_state,
            opened=held.counts.get("open", 0),
            half_open=held.counts.get("half_open", 0),
            closed=held.counts.get("closed", 0),
            over_s=round(now - held.since, 1),
            last_reason=last.reason,
            last_error=last.last_error,
        )

    @staticmethod
    def _line(event: BreakerTransition) -> None:
        log = {"open": logger.error, "half_open": logger.warning}.get(event.to_state, logger.info)
        log(
            LOG_EVENTS.get(event.to_state, "modelwatch.circuit.transition"),
            circuit=event.breaker,
            router=event.router,
            model=event.model,
            from_state=event.from_state,
            to_state=event.to_state,
            reason=event.reason,
            retry_after_s=event.retry_after_s,
            last_error=event.last_error,
        )
