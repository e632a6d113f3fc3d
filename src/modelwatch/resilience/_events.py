"""What the router tells the world: its decisions go to the one event stream of
:mod:`modelwatch.resilience.hooks` (failover, retry, rejection, hedge), where the default
listeners turn them into span events, the ``modelwatch.failovers`` counter and logs; the two
measurements that are not events of the stream (``modelwatch.failover.duration``,
``modelwatch.hedges`` by outcome) and the rate-limit readings are recorded here.

Every function here is guarded: telemetry can fail, the call it describes cannot.
"""

from __future__ import annotations

from typing import Any, Final

from opentelemetry.trace import Span

from modelwatch import semconv
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture._telemetry import telemetry
from modelwatch.errors import CircuitOpenError
from modelwatch.resilience import hooks
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
    "may_carry_headers",
    "note_headers",
    "note_success",
    "rejected",
    "retry",
]

HEDGE_WON: Final = semconv.HEDGE_WON
HEDGE_LOST: Final = semconv.HEDGE_LOST
HEDGE_CANCELLED: Final = semconv.HEDGE_CANCELLED


def rejected(
    router: str, span: Span, m: Member, reason: str, retry_after_s: float | None
) -> CircuitOpenError:
    """A backend refused the call (open breaker, benched after a 429, spent budget): the
    event, and the :class:`CircuitOpenError` that stands for it in the call's attempts."""
    hooks.emit(
        hooks.CallRejected(m.breaker.name, reason, retry_after_s, router, m.backend.model, span)
    )
    return CircuitOpenError(m.breaker.name, retry_after_s)


def failover(router: str, span: Span, passed: tuple[Member, str], to: Member) -> None:
    """The call moves on from ``passed`` (a backend and why) to ``to``."""
    tier = passed[0].spec.span_attributes.get(semconv.MODELWATCH_TIER)
    hooks.emit(
        hooks.Failover(router, passed[0].backend.model, to.backend.model, passed[1], span, tier)
    )


def retry(router: str, span: Span, m: Member, *, attempt: int, wait_s: float, reason: str) -> None:
    """The same backend is about to be retried after ``wait_s``."""
    hooks.emit(hooks.Retry(router, m.backend.model, attempt, wait_s, reason, span))


def hedge_started(router: str, span: Span, slow: Member, req: Req, delay_s: float) -> None:
    """A hedged attempt on ``req.member`` starts alongside the slow attempt on ``slow``."""
    hooks.emit(hooks.Hedge(router, slow.backend.model, req.member.backend.model, delay_s, span))


#: ``(router, from, to, reason) -> attributes``: few combinations, built once each
_attributes: dict[tuple[str, str, str, str], dict[str, str]] = {}
_ATTRIBUTES_MAX: Final = 2000


def failover_duration(router: str, first: tuple[Member, str], to: Member, seconds: float) -> None:
    """A call that failed over succeeded on ``to`` after spending ``seconds`` on the
    backends before it (from the call's start to the start of the attempt that worked)."""
    with guard("router.failover_duration"):
        key = (router, first[0].backend.model, to.backend.model, first[1])
        attrs = _attributes.get(key)
        if attrs is None:
            attrs = {
                semconv.MODELWATCH_ROUTER: router,
                semconv.FROM: key[1],
                semconv.TO: key[2],
                semconv.REASON: key[3],
            }
            if len(_attributes) < _ATTRIBUTES_MAX:
                _attributes[key] = attrs
        telemetry().instrument(semconv.FAILOVER_DURATION).record(seconds, attrs)


#: ``(router, outcome) -> attributes``
_hedge_attributes: dict[tuple[str, str], dict[str, str]] = {}


def hedge_outcome(router: str, outcome: str) -> None:
    """A hedged attempt ended: ``won``, ``lost`` (it failed) or ``cancelled``."""
    with guard("router.hedge_outcome"):
        key = (router, outcome)
        attrs = _hedge_attributes.get(key)
        if attrs is None:
            attrs = _hedge_attributes[key] = {
                semconv.MODELWATCH_ROUTER: router,
                semconv.HEDGE_OUTCOME: outcome,
            }
        telemetry().instrument(semconv.HEDGES).add(1, attrs)


def note_headers(m: Member, source: Any, now: float) -> bool:
    """Feed ``x-ratelimit-*`` headers of a result or an error into the rate-limit gauge
    (``now``: the router clock's time of the reading). Whether there was a reading."""
    try:
        headers = response_headers(source)
        if headers:
            ratios = rate_limit_ratios(headers)
            if ratios:
                m.rate_limits.update(ratios)
                m.rate_limits_at = now
                return True
    except Exception as exc:
        report_internal_error("router.rate_limit", exc)
    return False


#: Result types known to carry no ``headers`` (plain values, and types seen without them):
#: the happy path skips the attribute lookup, which costs a raised AttributeError on most
#: client result objects (pydantic models). Bounded: types are few, but not trusted to be.
_NO_HEADERS: set[type] = {str, bytes, dict, list, tuple, int, float, bool, type(None)}
_NO_HEADERS_MAX: Final = 512


def may_carry_headers(result: Any) -> bool:
    """Whether a successful ``result`` carries response headers (the rate-limit readings)."""
    kind = type(result)
    if kind in _NO_HEADERS:
        return False
    try:
        if getattr(result, "headers", None) is not None:
            return True
        if (
            not hasattr(kind, "headers")  # no class attribute, property or slot of that name
            and "headers" not in getattr(result, "__dict__", {"headers": None})
            and len(_NO_HEADERS) < _NO_HEADERS_MAX
        ):
            _NO_HEADERS.add(kind)  # a type whose instances never have any
    except Exception as exc:
        report_internal_error("router.headers", exc)
    return False


def note_success(m: Member, result: Any, now: float) -> None:
    """A successful answer: its rate-limit headers are the new reading; without any, the
    success itself supersedes an earlier reading (Hugging Face answers carry no rate-limit
    headers, so two 429s would otherwise leave "0 % left" standing while calls succeed)."""
    if not note_headers(m, result, now) and m.rate_limits:
        m.rate_limits = {}
