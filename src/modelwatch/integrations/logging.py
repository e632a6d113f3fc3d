"""Log correlation: put the current ``trace_id`` and ``span_id`` on the host's log records.

modelwatch never configures logging for the host. These are pieces the host adds itself:

- :func:`add_trace_context`, a structlog processor::

      structlog.configure(processors=[modelwatch.integrations.logging.add_trace_context, ...])

- :class:`TraceContextFilter`, a stdlib ``logging.Filter``::

      handler.addFilter(modelwatch.integrations.logging.TraceContextFilter())

Both add ``trace_id`` and ``span_id`` (lowercase hex, as in W3C trace context) when a span is
recording or sampled in the current context, and nothing otherwise. Neither ever raises.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from opentelemetry import trace

from modelwatch._safety import report_internal_error

__all__ = ["TraceContextFilter", "add_trace_context", "current_trace_ids"]


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span as hex, or ``None`` if there is none."""
    try:
        ctx = trace.get_current_span().get_span_context()
    except Exception as exc:
        report_internal_error("log_correlation", exc)
        return None
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def add_trace_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add ``trace_id`` and ``span_id`` of the current span."""
    ids = current_trace_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


class TraceContextFilter(logging.Filter):
    """stdlib logging filter: sets ``record.trace_id`` / ``record.span_id`` (``""`` if none).

    Always lets the record through, so it can sit on any handler or logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record``; always returns ``True``."""
        ids = current_trace_ids()
        record.trace_id, record.span_id = ids if ids is not None else ("", "")
        return True
