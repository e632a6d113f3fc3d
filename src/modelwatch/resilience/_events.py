"""The router's telemetry beyond spans: failover, retry, rejection and hedge events and metrics.

Every function here is guarded: telemetry can fail, the call it describes cannot.
"""

from __future__ import annotations

from typing import Any, Final

from opentelemetry.trace import Span

from modelwatch import semconv
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture._telemetry import telemetry
from modelwatch.errors import CircuitOpenError
from modelwatch.resilience._kinds import rate_limit_ratios, response_headers
from modelwatch.resilience._members import Member, Req

__all__ = [
    "HEDGE_CANCELLED",
    "HEDGE_LOST",
    "HEDGE_WON",
    "failover",
    "failover_duration",
    "hedge_outcome",
    "hedge_started",
    "note_headers",
    "rejected",
    "retry",
]

HEDGE_WON: Final = semconv.HEDGE_WON
HEDGE_LOST: Final = semconv.HEDGE_LOST
HEDGE_CANCELLED: Final = semconv.HEDGE_CANCELLED


def rejected(span: Span, m: Member, reason: str, retry_after_s: float | None) -> CircuitOpenError:
    """A backend refused the call (open breaker, or benched after a 429): span event, and
    the :class:`CircuitOpenError` that stands for it in the call's attempts."""
    with guard("router.reject_event"):
        if span.is_recording():
            span.add_event(
                semconv.EVENT_REJECTED,
                {
                    semconv.GEN_AI_REQUEST_MODEL: m.backend.model,
                    semconv.MODELWATCH_CIRCUIT: m.breaker.name,
                    semconv.REASON: reason,
                    semconv.MODELWATCH_RETRY_AFTER: retry_after_s or 0.0,
                },
            )
    return CircuitOpenError(m.breaker.name, retry_after_s)


#: ``(router, from, to, reason) -> attributes``: few combinations, built once each
_attributes: dict[tuple[str, str, str, str], dict[str, str]] = {}


def _failover_attributes(router: str, source: str, target: str, reason: str) -> dict[str, str]:
    key = (router, source, target, reason)
    attrs = _attributes.get(key)
    if attrs is None:
        attrs = _attributes[key] = {
            semconv.MODELWATCH_ROUTER: router,
            semconv.FROM: source,
            semconv.TO: target,
            semconv.REASON: reason,
        }
    return attrs


def failover(router: str, span: Span, passed: tuple[Member, str], to: Member) -> None:
    """The call moves on from ``passed`` (a backend and why) to ``to``."""
    with guard("router.failover"):
        attrs = _failover_attributes(router, passed[0].backend.model, to.backend.model, passed[1])
        telemetry().instrument(semconv.FAILOVERS).add(1, attrs)
        if span.is_recording():
            span.add_event(semconv.EVENT_FAILOVER, attrs)


def failover_duration(router: str, first: tuple[Member, str], to: Member, seconds: float) -> None:
    """A call that failed over succeeded on ``to`` after spending ``seconds`` on the
    backends before it (from the call's start to the start of the attempt that worked)."""
    with guard("router.failover_duration"):
        telemetry().instrument(semconv.FAILOVER_DURATION).record(
            seconds,
            _failover_attributes(router, first[0].backend.model, to.backend.model, first[1]),
        )


def retry(span: Span, m: Member, attempt: int, wait_s: float, reason: str) -> None:
    """The same backend is about to be retried after ``wait_s``."""
    with guard("router.retry_event"):
        if span.is_recording():
            span.add_event(
                semconv.EVENT_RETRY,
                {
                    semconv.GEN_AI_REQUEST_MODEL: m.backend.model,
                    semconv.MODELWATCH_ATTEMPT: attempt,
                    semconv.MODELWATCH_WAIT: wait_s,
                    semconv.REASON: reason,
                },
            )


def hedge_started(span: Span, slow: Member, req: Req) -> None:
    """A hedged attempt on ``req.member`` starts alongside the slow attempt on ``slow``."""
    with guard("router.hedge_event"):
        if span.is_recording():
            span.add_event(
                semconv.EVENT_HEDGE,
                {
                    semconv.FROM: slow.backend.model,
                    semconv.TO: req.member.backend.model,
                    semconv.MODELWATCH_ATTEMPT: req.number,
                },
            )


#: ``(router, outcome) -> attributes``
_hedge_attributes: dict[tuple[str, str], dict[str, str]] = {}


def hedge_outcome(router: str, span: Span | None, m: Member, outcome: str) -> None:
    """A hedged attempt on ``m`` ended: ``won``, ``lost`` (it failed) or ``cancelled``."""
    with guard("router.hedge_outcome"):
        key = (router, outcome)
        attrs = _hedge_attributes.get(key)
        if attrs is None:
            attrs = _hedge_attributes[key] = {
                semconv.MODELWATCH_ROUTER: router,
                semconv.HEDGE_OUTCOME: outcome,
            }
        telemetry().instrument(semconv.HEDGES).add(1, attrs)


def note_headers(m: Member, source: Any, now: float) -> None:
    """Feed ``x-ratelimit-*`` headers of a result or an error into the rate-limit gauge
    (``now``: the router clock's time of the reading)."""
    try:
        headers = response_headers(source)
        if headers:
            ratios = rate_limit_ratios(headers)
            if ratios:
                m.rate_limits.update(ratios)
                m.rate_limits_at = now
    except Exception as exc:
        report_internal_error("router.rate_limit", exc)
