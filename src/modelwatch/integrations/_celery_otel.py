"""modelwatch's Celery integration as an OpenTelemetry instrumentor, and its cooperation with
``opentelemetry-instrumentation-celery``.

- :class:`CeleryInstrumentor` is a ``BaseInstrumentor`` registered under the
  ``opentelemetry_instrumentor`` entry point, so ``opentelemetry-instrument celery -A app worker``
  turns modelwatch's task spans and metrics on for every Celery app of the process.
- When the contrib ``CeleryInstrumentor`` is active it owns the task spans and the trace
  propagation; modelwatch then adds its task metrics and writes the messaging conventions the
  contrib spans (0.66b2) lack — ``messaging.system``, ``messaging.operation.name``,
  ``messaging.operation.type``, ``messaging.destination.name`` — onto those spans.
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from typing import Any

from opentelemetry import trace

from modelwatch import semconv
from modelwatch._safety import report_internal_error

try:
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )
except ImportError:  # pragma: no cover - the celery extra installs it

    class BaseInstrumentor:  # type: ignore[no-redef]
        """Stand-in when ``opentelemetry-instrumentation`` is missing: direct calls work."""

        def instrument(self, **kwargs: Any) -> None:
            self._instrument(**kwargs)

        def uninstrument(self, **kwargs: Any) -> None:
            self._uninstrument(**kwargs)

        def _instrument(self, **kwargs: Any) -> None:
            raise NotImplementedError

        def _uninstrument(self, **kwargs: Any) -> None:
            raise NotImplementedError


__all__ = ["CeleryInstrumentor", "contrib_owns_spans", "enrich_contrib_span"]


def contrib_owns_spans() -> bool:
    """``opentelemetry-instrumentation-celery`` is active: it makes the spans, not us."""
    module = sys.modules.get("opentelemetry.instrumentation.celery")
    if module is None:
        return False
    instrumentor = getattr(module, "CeleryInstrumentor", None)
    try:
        return bool(instrumentor is not None and instrumentor().is_instrumented_by_opentelemetry)
    except Exception:
        return False


def messaging_attributes(operation: str, destination: Any) -> dict[str, Any]:
    """The messaging-convention attributes of a Celery ``send`` or ``process`` span."""
    attributes: dict[str, Any] = {
        semconv.MESSAGING_SYSTEM: "celery",
        semconv.MESSAGING_OPERATION_NAME: operation,
        semconv.MESSAGING_OPERATION_TYPE: operation,
    }
    if isinstance(destination, str) and destination:
        attributes[semconv.MESSAGING_DESTINATION] = destination
    return attributes


def _contrib_publish_span(task_name: Any, task_id: Any) -> Any:
    from celery import current_app
    from opentelemetry.instrumentation.celery import utils

    task = current_app.tasks.get(task_name) if isinstance(task_name, str) else None
    found = utils.retrieve_context(task, task_id, is_publish=True) if task is not None else None
    return found[0] if found else None


def enrich_contrib_span(operation: str, destination: Any, task_name: Any, task_id: Any) -> None:
    """Put the messaging conventions on the contrib package's span of this publish/run
    (best effort: never raises; the contrib span simply lacks them then)."""
    try:
        if operation == semconv.SPAN_TASK_SEND:
            span = _contrib_publish_span(task_name, task_id)
        else:
            span = trace.get_current_span()  # the contrib run span is current in the task
        if span is not None and span.is_recording():
            span.set_attributes(messaging_attributes(operation, destination))
    except Exception as exc:
        report_internal_error("celery.contrib_span", exc)


class CeleryInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``opentelemetry-instrument`` entry point: modelwatch's task spans and metrics for every
    Celery app of the process (``instrument(app=...)`` limits it to one app).

    >>> from modelwatch.celery import CeleryInstrumentor
    >>> CeleryInstrumentor().instrument()  # doctest: +SKIP
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The packages this instrumentor needs."""
        return ("celery >= 5.3",)

    def _instrument(self, **kwargs: Any) -> None:
        self._apply(kwargs.get("app"), on=True)

    def _uninstrument(self, **kwargs: Any) -> None:
        self._apply(kwargs.get("app"), on=False)

    @staticmethod
    def _apply(app: Any, *, on: bool) -> None:
        from modelwatch.integrations import celery

        if app is not None:
            (celery.instrument if on else celery.uninstrument)(app)
        else:
            (celery.instrument_all if on else celery.uninstrument_all)()
