"""The routers' own telemetry, read in process: their spans (the users' latency as
modelwatch tells it, for the hedging summary line, not as the demo timed it) and their hedge
events (event lines).

:func:`time_routes` adds a span processor to the OpenTelemetry SDK tracer provider that
:func:`modelwatch.configure` installed; each routed call becomes a
:class:`~modelwatch.demo.record.RouteRecord` (a worker process sends it to the demo with its
other records): its ``route {router}`` span, or, for a call its first attempt answered (which
has no route span: docs/router.md, "Trace shape"), that attempt's span. Calls made by health
checks are told apart the way modelwatch labels them: the span ends inside
:func:`modelwatch.capture.origin.probing`. :class:`HedgeLog` listens to the routers'
:class:`modelwatch.resilience.hooks.Hedge` events.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from modelwatch import semconv
from modelwatch.capture.origin import in_probe
from modelwatch.demo.record import Recorder, RouteRecord
from modelwatch.resilience import hooks

__all__ = ["HedgeLog", "RouteTimer", "time_routes"]

_PREFIX: Final = semconv.route_span_name("")


class RouteTimer(SpanProcessor):
    """Writes every routed call (its route span, or its answered first attempt's) to a
    recorder until :meth:`stop`."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._active = True
        self._routes: set[int] = set()  # route spans running now
        #: first attempts recorded as calls (a route span started later links to one)
        self._answered: deque[int] = deque(maxlen=256)

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        """Note a ``route`` span: an attempt under it is not a call of its own."""
        if self._active and span.name.startswith(_PREFIX):
            self._routes.add(span.context.span_id)

    def on_end(self, span: ReadableSpan) -> None:
        """Record a routed call (never raises into the router)."""
        if not self._active:
            return
        attributes = span.attributes or {}
        if span.name.startswith(_PREFIX):
            self._routes.discard(span.context.span_id)
            if any(link.context.span_id in self._answered for link in span.links):
                return  # started after its first attempt answered: recorded with it
            router = span.name[len(_PREFIX) :]
        else:
            router = attributes.get(semconv.MODELWATCH_ROUTER)  # type: ignore[assignment]
            parent = span.parent
            if (
                not isinstance(router, str)
                or attributes.get(semconv.MODELWATCH_ATTEMPT) != 1
                or span.status.status_code is StatusCode.ERROR  # the call goes on
                or (parent is not None and parent.span_id in self._routes)
            ):
                return
            self._answered.append(span.context.span_id)
        start, end = span.start_time, span.end_time
        if start is None or end is None:
            return
        self._recorder.route(
            RouteRecord(
                start / 1e9,
                end / 1e9,
                router,
                "probe" if in_probe() else "user",
                span.status.status_code is not StatusCode.ERROR,
            )
        )

    def stop(self) -> None:
        """Record no more (the SDK has no way to remove a processor)."""
        self._active = False

    def shutdown(self) -> None:
        """Stop with the provider."""
        self.stop()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered."""
        return True


def time_routes(recorder: Recorder) -> RouteTimer | None:
    """Add a :class:`RouteTimer` to the global SDK tracer provider; ``None`` if the provider
    is not the SDK's (an application's own, or none): then no route is timed."""
    provider = trace.get_tracer_provider()
    add = getattr(provider, "add_span_processor", None)
    if add is None:
        return None
    timer = RouteTimer(recorder)
    add(timer)
    return timer


class HedgeLog:
    """Hedges as event lines (kind ``hedge``): each router's first one, then how many more,
    at most every ``every_s`` seconds. A listener of :mod:`modelwatch.resilience.hooks` from
    construction to :meth:`close`."""

    def __init__(self, recorder: Recorder, every_s: float) -> None:
        self._recorder = recorder
        self._every_s = every_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._pending: dict[str, int] = {}
        hooks.add_listener(self)

    def __call__(self, event: hooks.Event) -> None:
        """Log a hedge (quick: it runs on the call's thread)."""
        if not isinstance(event, hooks.Hedge):
            return
        now = self._recorder.now()
        with self._lock:
            last = self._last.get(event.router)
            more = self._pending.get(event.router, 0)
            if last is not None and now - last < self._every_s:
                self._pending[event.router] = more + 1
                return
            self._last[event.router] = now
            self._pending[event.router] = 0
        if last is None:
            text = (
                f"{event.router}: {event.model} had not answered after {event.delay_s:.2f} s: "
                f"{event.backup_model} races it (the first answer wins)"
            )
        else:
            text = f"{event.router}: {more + 1} more call(s) hedged on {event.backup_model}"
        self._recorder.event("hedge", text, at=now)

    def close(self) -> None:
        """Stop listening."""
        hooks.remove_listener(self)
