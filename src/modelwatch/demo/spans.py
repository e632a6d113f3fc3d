"""The routers' own telemetry, read in process: their ``route {router}`` spans (the users'
latency as modelwatch tells it, for the hedging summary line, not as the demo timed it) and
their hedge events (event lines).

:func:`time_routes` adds a span processor to the OpenTelemetry SDK tracer provider that
:func:`modelwatch.configure` installed; each ended ``route`` span becomes a
:class:`~modelwatch.demo.record.RouteRecord` (a worker process sends it to the demo with its
other records). Calls made by health checks are told apart the way modelwatch labels them:
the span ends inside :func:`modelwatch.capture.origin.probing`. :class:`HedgeLog` listens to
the routers' :class:`modelwatch.resilience.hooks.Hedge` events.
"""

from __future__ import annotations

import threading
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
    """Writes every ended ``route`` span to a recorder until :meth:`stop`."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._active = True

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        """Nothing to do at the start."""

    def on_end(self, span: ReadableSpan) -> None:
        """Record a ``route`` span (never raises into the router)."""
        if not self._active or not span.name.startswith(_PREFIX):
            return
        start, end = span.start_time, span.end_time
        if start is None or end is None:
            return
        self._recorder.route(
            RouteRecord(
                start / 1e9,
                end / 1e9,
                span.name[len(_PREFIX) :],
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
