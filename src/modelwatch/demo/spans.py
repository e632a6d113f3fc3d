"""The routers' own ``route {router}`` spans, read in process: the users' latency as
modelwatch's telemetry tells it (the hedging summary line), not as the demo timed it.

:func:`time_routes` adds a span processor to the OpenTelemetry SDK tracer provider that
:func:`modelwatch.configure` installed; each ended ``route`` span becomes a
:class:`~modelwatch.demo.record.RouteRecord` (a worker process sends it to the demo with its
other records). Calls made by health checks are told apart the way modelwatch labels them:
the span ends inside :func:`modelwatch.capture.origin.probing`.
"""

from __future__ import annotations

from typing import Any, Final

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from modelwatch import semconv
from modelwatch.capture.origin import in_probe
from modelwatch.demo.record import Recorder, RouteRecord

__all__ = ["RouteTimer", "time_routes"]

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
