"""The route span of one routed call, started only when the call needs one.

A call answered by its first attempt is that attempt's model span alone: it already carries
``modelwatch.router`` and ``modelwatch.attempt`` = 1, and a route span around it would say
nothing more (its only attribute is the router's name) while costing as much as the model
span itself. The route span starts the first time the call does anything beyond that one
attempt: a backend rejects it (open breaker, benched, spent budget), an attempt fails (and
the call fails over, retries, or surfaces the error), or the call gives up. Then it starts
with the call's own start time and the caller's context as parent, so its duration and place
in the trace are what they would have been; the attempts made before it (at most the first)
are its siblings, and it links to each (``modelwatch.attempt`` on the link); every later
attempt is its child. Hedging routers and streams start it at once (an attempt may still be
running when the route span would start). See ``docs/router.md``, "Trace shape".
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind

from modelwatch import semconv
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture._telemetry import telemetry
from modelwatch.capture.scrub import record_exception
from modelwatch.resilience._members import Req

__all__ = ["Route", "error_on_span"]


class Route:
    """The route span of one call: started now (``eager``) or on first use of :attr:`span`."""

    __slots__ = ("_attributes", "_name", "_span", "_start_ns", "_token", "_tried")

    def __init__(
        self, name: str, attributes: dict[str, Any], *, eager: bool, current: bool = True
    ) -> None:
        self._name = name
        self._attributes = attributes
        self._token: object | None = None
        self._tried: list[tuple[int, SpanContext]] | None = None
        self._span: Span | None = None
        self._start_ns = time.time_ns()
        if eager:  # ``current=False``: a stream makes it current only while its code runs
            self._start(current=current)

    @property
    def started(self) -> bool:
        """Whether the route span exists."""
        return self._span is not None

    @property
    def span(self) -> Span:
        """The route span, started (and made current, so later attempts are its children) on
        first use."""
        span = self._span
        if span is None:
            span = self._start(current=True)
        return span

    def need(self) -> None:
        """Start the route span now if it has not started (something will be put on it)."""
        if self._span is None:
            self._start(current=True)

    def tried(self, req: Req) -> None:
        """Attempt ``req`` ended before the route span started: the route span will link to
        its span."""
        context = req.call.span_context if req.call is not None else None
        if self._span is None and context is not None and context.is_valid:
            if self._tried is None:
                self._tried = []
            self._tried.append((req.number, context))

    def _start(self, *, current: bool) -> Span:
        links = None
        if self._tried:
            links = [Link(ctx, {semconv.MODELWATCH_ATTEMPT: n}) for n, ctx in self._tried]
        # the caller's context: a route span starts before an attempt or after one ended
        # (its call detached), never while an attempt's context is current
        span = telemetry().tracer.start_span(
            self._name,
            kind=SpanKind.INTERNAL,
            attributes=self._attributes,
            links=links,
            start_time=self._start_ns,
        )
        self._span = span
        if current:
            self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def end(self, exc: BaseException | None = None) -> None:
        """The call ended (with ``exc``): a failed call always has its route span, with the
        error on it; a successful one ends its route span if it has one."""
        span = self._span
        if exc is not None:
            with guard("router.route_span"):
                if span is None:
                    span = self._start(current=False)
                error_on_span(span, exc)
        token, self._token = self._token, None
        if token is not None:
            try:
                otel_context.detach(token)  # type: ignore[arg-type]
            except Exception as internal:
                report_internal_error("router.detach", internal)
        if span is not None:
            with guard("router.route_span"):
                span.end()


def error_on_span(span: Span, exc: BaseException) -> None:
    """What ``start_as_current_span`` would do on an exception, without its overhead."""
    with guard("router.span_error"):
        if span.is_recording():
            record_exception(span, exc)  # scrubbed message, status and stack trace
