"""Celery tasks traced from producer to worker, with duration and queue-wait metrics.

:func:`instrument` connects handlers to Celery's signals:

- publishing (``before_task_publish``/``after_task_publish``): a PRODUCER span
  ``"send {task}"``; its trace context (W3C ``traceparent``) and the publication time go into
  the message headers;
- running (``task_prerun``/``task_postrun``, ``task_failure``, ``task_retry``): a CONSUMER span
  ``"process {task}"`` whose parent is the producer span, current while the task runs, so model
  calls and agent steps inside the task belong to the trace of the request that queued it;
- ``task_revoked`` (revoked or expired before or while running): counted as ``revoked``;
- metrics ``modelwatch.task.duration`` (task name and outcome ``success``, ``failure``, ``retry``,
  ``revoked``) and ``modelwatch.task.queue_wait`` (publication to start, task name); never
  hostnames or task ids;
- prefork: pool children export with the exporters the OpenTelemetry SDK re-initialises after
  fork; buffered telemetry is flushed when a child exits (``worker_process_shutdown``, e.g. when
  ``max_tasks_per_child`` recycles it; its ``/metrics`` and discovery file go too) and when the
  worker shuts down (``worker_shutdown``).

If ``opentelemetry-instrumentation-celery`` is installed and active, it owns the spans and the
trace propagation; modelwatch then adds only its metrics, so no span is emitted twice.

:func:`monitored_task` is the explicit alternative for one task function.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from modelwatch import semconv
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture._telemetry import telemetry
from modelwatch.capture.call import _classify, _record_error_on_span
from modelwatch.integrations._celery_otel import (
    CeleryInstrumentor,
    contrib_owns_spans,
    enrich_contrib_span,
    messaging_attributes,
)

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "HEADER_PUBLISHED_AT",
    "CeleryInstrumentor",
    "OUTCOME_FAILURE",
    "OUTCOME_RETRY",
    "OUTCOME_REVOKED",
    "OUTCOME_SUCCESS",
    "instrument",
    "instrument_all",
    "is_instrumented",
    "monitored_task",
    "uninstrument",
    "uninstrument_all",
]

# Span names (``"send {task}"`` PRODUCER, ``"process {task}"`` CONSUMER) and attributes
# are in modelwatch.semconv.

OUTCOME_SUCCESS: Final = "success"
OUTCOME_FAILURE: Final = "failure"
OUTCOME_RETRY: Final = "retry"
OUTCOME_REVOKED: Final = "revoked"
_STATE_OUTCOMES: Final = {
    "SUCCESS": OUTCOME_SUCCESS,
    "FAILURE": OUTCOME_FAILURE,
    "RETRY": OUTCOME_RETRY,
    "REVOKED": OUTCOME_REVOKED,
    "REJECTED": "rejected",
    "IGNORED": "ignored",
}

#: Message header carrying the publication time (Unix seconds, float) for the queue wait.
HEADER_PUBLISHED_AT: Final = "modelwatch_published_at"
#: How long a flush at child exit or worker shutdown may take.
FLUSH_TIMEOUT_S: Final = 5.0
#: Publications whose ``after_task_publish`` never came (the publish raised) kept at most.
_MAX_PENDING_PUBLISH: Final = 1024

_lock = threading.Lock()
_apps: list[Any] = []
_all_apps = False  # CeleryInstrumentor().instrument() without an app: every app is ours
_connected = False


@dataclass
class _Run:
    name: str
    start: float
    span: Span | None
    token: Token[otel_context.Context] | None
    exc: BaseException | None = None


_runs: dict[str, _Run] = {}
_publishing: OrderedDict[str, Span] = OrderedDict()


# ----------------------------------------------------------------------------- helpers
def _header(request: Any, key: str) -> Any:
    """A message header as the task request shows it: an attribute (protocol 2 headers) or
    an entry of ``request.headers`` (``apply(headers=...)``, protocol 1)."""
    value = getattr(request, key, None)
    if value is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict):
            value = headers.get(key)
    return value


class _RequestGetter(Getter[Any]):
    """Reads propagation headers from a Celery task request (headers become attributes)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = _header(carrier, key)
        if value is None:
            return None
        return [value] if isinstance(value, str) else list(value)

    def keys(self, carrier: Any) -> list[str]:
        return list(getattr(carrier, "__dict__", {}))


_getter: Final = _RequestGetter()


def _outcome(state: Any) -> str:
    if not isinstance(state, str):
        return OUTCOME_FAILURE
    return _STATE_OUTCOMES.get(state, state.lower())


def _task_name(task: Any, request: Any = None) -> str:
    name = getattr(task, "name", None) or getattr(request, "task", None)
    return name if isinstance(name, str) and name else "unknown"


def _ours(task: Any) -> bool:
    """The task belongs to an instrumented app (tasks without an app count as ours)."""
    if _all_apps:
        return True
    app = getattr(task, "_app", None) or getattr(task, "app", None)
    if app is None:
        return bool(_apps)
    return any(app is a for a in _apps)


def _record_error(span: Span, exc: BaseException) -> None:
    _record_error_on_span(span, exc, _classify(exc))


# ------------------------------------------------------------------------- producer side
def _before_publish(
    sender: Any = None, headers: Any = None, routing_key: Any = None, **_: Any
) -> None:
    with guard("celery.before_publish"):
        if not (_apps or _all_apps) or not isinstance(headers, dict):
            return
        headers[HEADER_PUBLISHED_AT] = time.time()
        name = sender if isinstance(sender, str) else str(headers.get("task") or "unknown")
        task_id = headers.get("id")
        if contrib_owns_spans():
            enrich_contrib_span(semconv.SPAN_TASK_SEND, routing_key, name, task_id)
            return
        attributes = messaging_attributes(semconv.SPAN_TASK_SEND, routing_key)
        attributes[semconv.TASK_NAME] = name
        if isinstance(task_id, str):
            attributes[semconv.MESSAGING_MESSAGE_ID] = task_id
        retries = headers.get("retries")
        if isinstance(retries, int) and retries:
            attributes[semconv.TASK_RETRIES] = retries
        span = telemetry().tracer.start_span(
            f"{semconv.SPAN_TASK_SEND} {name}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        propagate.inject(headers, context=trace.set_span_in_context(span))
        if not isinstance(task_id, str):
            span.end()
            return
        with _lock:
            _publishing[task_id] = span
            while len(_publishing) > _MAX_PENDING_PUBLISH:  # publishes that raised
                _stale_id, stale = _publishing.popitem(last=False)
                stale.set_status(Status(StatusCode.ERROR, "publish did not complete"))
                stale.end()


def _after_publish(headers: Any = None, **_: Any) -> None:
    with guard("celery.after_publish"):
        task_id = headers.get("id") if isinstance(headers, dict) else None
        if not isinstance(task_id, str):
            return
        with _lock:
            span = _publishing.pop(task_id, None)
        if span is not None:
            span.end()


# --------------------------------------------------------------------------- worker side
def _start_run(task: Any, task_id: str) -> _Run:
    request = getattr(task, "request", None)
    name = _task_name(task, request)
    now_wall = time.time()
    run = _Run(name=name, start=time.perf_counter(), span=None, token=None)
    tel = telemetry()
    published = _header(request, HEADER_PUBLISHED_AT)
    if isinstance(published, (int, float)) and not isinstance(published, bool):
        tel.instrument(semconv.TASK_QUEUE_WAIT).record(
            max(0.0, now_wall - float(published)), {semconv.TASK_NAME: name}
        )
    delivery = getattr(request, "delivery_info", None)
    queue = delivery.get("routing_key") if isinstance(delivery, dict) else None
    if contrib_owns_spans():
        enrich_contrib_span(semconv.SPAN_TASK_PROCESS, queue, name, task_id)
    else:
        parent = propagate.extract(request, getter=_getter) if request is not None else None
        attributes = messaging_attributes(semconv.SPAN_TASK_PROCESS, queue)
        attributes[semconv.MESSAGING_MESSAGE_ID] = task_id
        attributes[semconv.TASK_NAME] = name
        retries = getattr(request, "retries", None)
        if isinstance(retries, int) and retries:
            attributes[semconv.TASK_RETRIES] = retries
        span = tel.tracer.start_span(
            f"{semconv.SPAN_TASK_PROCESS} {name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        run.span = span
        run.token = otel_context.attach(trace.set_span_in_context(span))
    return run


def _finish_run(run: _Run, outcome: str) -> None:
    duration = time.perf_counter() - run.start
    if run.token is not None:
        try:
            otel_context.detach(run.token)
        except Exception as exc:
            report_internal_error("celery.detach", exc)
    telemetry().instrument(semconv.TASK_DURATION).record(
        duration, {semconv.TASK_NAME: run.name, semconv.TASK_OUTCOME: outcome}
    )
    span = run.span
    if span is not None:
        span.set_attribute(semconv.TASK_OUTCOME, outcome)
        if run.exc is not None and outcome != OUTCOME_SUCCESS:
            _record_error(span, run.exc)
        span.end()


def _prerun(task_id: Any = None, task: Any = None, **_: Any) -> None:
    with guard("celery.prerun"):
        if not isinstance(task_id, str) or task is None or not _ours(task):
            return
        _runs[task_id] = _start_run(task, task_id)


def _failure(task_id: Any = None, exception: Any = None, **_: Any) -> None:
    with guard("celery.failure"):
        run = _runs.get(task_id) if isinstance(task_id, str) else None
        if run is not None and isinstance(exception, BaseException):
            run.exc = exception


def _retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    with guard("celery.retry"):
        task_id = getattr(request, "id", None)
        run = _runs.get(task_id) if isinstance(task_id, str) else None
        cause = getattr(reason, "exc", None)  # celery.exceptions.Retry wraps the cause
        if isinstance(cause, BaseException):
            reason = cause
        if run is not None and isinstance(reason, BaseException):
            run.exc = reason


def _postrun(task_id: Any = None, state: Any = None, **_: Any) -> None:
    with guard("celery.postrun"):
        run = _runs.pop(task_id, None) if isinstance(task_id, str) else None
        if run is not None:
            _finish_run(run, _outcome(state))


def _revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    with guard("celery.revoked"):
        if sender is not None and not _ours(sender):
            return
        task_id = getattr(request, "id", None)
        run = _runs.pop(task_id, None) if isinstance(task_id, str) else None
        if run is not None:  # terminated while running in this process
            _finish_run(run, OUTCOME_REVOKED)
            return
        # revoked or expired before it started: counted, with no run time
        telemetry().instrument(semconv.TASK_DURATION).record(
            0.0, {semconv.TASK_NAME: _task_name(sender, request), semconv.TASK_OUTCOME: "revoked"}
        )


# ------------------------------------------------------------------------ process hooks
def _child_init(**_: Any) -> None:
    """A prefork child starts: forget the state copied from the parent."""
    _runs.clear()
    with _lock:
        _publishing.clear()


def _flush(**_: Any) -> None:
    with guard("celery.flush"):
        from modelwatch._config import flush

        flush(timeout_s=FLUSH_TIMEOUT_S)


def _child_exit(**_: Any) -> None:
    """A pool child leaves (``os._exit``, no ``atexit``): flush, close its ``/metrics`` and
    remove its discovery file, as the process exit hook does."""
    with guard("celery.child_exit"):
        from modelwatch._config import _at_exit, flush

        flush(timeout_s=FLUSH_TIMEOUT_S)
        _at_exit()


def _signals() -> list[tuple[Any, Callable[..., None]]]:
    from celery import signals

    return [
        (signals.before_task_publish, _before_publish),
        (signals.after_task_publish, _after_publish),
        (signals.task_prerun, _prerun),
        (signals.task_failure, _failure),
        (signals.task_retry, _retry),
        (signals.task_postrun, _postrun),
        (signals.task_revoked, _revoked),
        (signals.worker_process_init, _child_init),
        (signals.worker_process_shutdown, _child_exit),
        (signals.worker_shutdown, _flush),
    ]


# ----------------------------------------------------------------------------- public
def instrument(app: Any) -> None:
    """Trace and measure the tasks of Celery ``app``, on the producer and the worker side.

    Call it where the app is defined (the module the worker imports with ``-A``), so it runs
    in the worker before the pool forks, and in every process that publishes tasks.
    Idempotent per app. Celery's signals are process-wide: publications from this process
    are traced once any app is instrumented; tasks run only for instrumented apps.

    >>> from celery import Celery
    >>> import modelwatch.celery
    >>> app = Celery("ai_engine", broker="memory://")
    >>> modelwatch.celery.instrument(app)
    >>> modelwatch.celery.uninstrument(app)
    """
    if app is None or not hasattr(app, "tasks"):
        raise TypeError(f"instrument() takes a Celery app, got {type(app).__name__}")
    with _lock:
        if not any(app is a for a in _apps):
            _apps.append(app)
        _connect()


def _connect() -> None:
    global _connected
    if not _connected:
        for signal, handler in _signals():
            signal.connect(handler, weak=False, dispatch_uid=f"modelwatch:{handler.__name__}")
        _connected = True


def instrument_all() -> None:
    """Trace and measure the tasks of every Celery app of this process (what
    ``opentelemetry-instrument`` does through :class:`CeleryInstrumentor`)."""
    global _all_apps
    with _lock:
        _all_apps = True
        _connect()


def uninstrument_all() -> None:
    """Undo :func:`instrument_all` (apps instrumented one by one stay instrumented)."""
    global _all_apps
    with _lock:
        _all_apps = False
        _disconnect_if_unused()


def uninstrument(app: Any) -> None:
    """Stop instrumenting ``app``; once no app is left, the signal handlers are disconnected."""
    with _lock:
        _apps[:] = [a for a in _apps if a is not app]
        _disconnect_if_unused()


def _disconnect_if_unused() -> None:
    global _connected
    if _apps or _all_apps or not _connected:
        return
    for signal, handler in _signals():
        signal.disconnect(handler, dispatch_uid=f"modelwatch:{handler.__name__}")
    _connected = False
    _publishing.clear()
    _runs.clear()


def is_instrumented(app: Any) -> bool:
    """``True`` if :func:`instrument` (or :func:`instrument_all`) is in effect for ``app``."""
    with _lock:
        return _all_apps or any(app is a for a in _apps)


# ----------------------------------------------------------------------- explicit marking
def _current_task() -> Any:
    from celery import current_task

    return current_task._get_current_object()


def _task_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    run: _Run | None = None
    task_id: str | None = None
    with guard("celery.monitored_task"):
        task = _current_task()
        request = getattr(task, "request", None)
        task_id = getattr(request, "id", None)
        if task is not None and isinstance(task_id, str) and task_id not in _runs:
            run = _start_run(task, task_id)
    if run is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        with guard("celery.monitored_task"):
            from celery.exceptions import Retry

            run.exc = exc.exc if isinstance(exc, Retry) and exc.exc is not None else exc
            _finish_run(run, OUTCOME_RETRY if isinstance(exc, Retry) else OUTCOME_FAILURE)
        raise
    with guard("celery.monitored_task"):
        _finish_run(run, OUTCOME_SUCCESS)
    return result


def monitored_task(fn: F) -> F:
    """Mark one task function explicitly, without :func:`instrument`.

    Put it under ``@app.task``. While the task runs it gets the CONSUMER span (continuing the
    producer's trace when the producer is instrumented) and the task metrics, with outcome
    ``success``, ``failure`` or ``retry`` (a revocation never reaches the function). If the
    task's app is also instrumented the signals already cover it and this does nothing more.
    Called as a plain function, outside a task, it is a pass-through.

    >>> from celery import Celery
    >>> import modelwatch.celery
    >>> app = Celery("ai_engine", broker="memory://")
    >>> @app.task
    ... @modelwatch.celery.monitored_task
    ... def summarize(text: str) -> str:
    ...     return text[:10]
    >>> summarize("not as a task")
    'not as a ta'
    """
    if not callable(fn):
        raise TypeError(f"monitored_task() decorates functions, got {type(fn).__name__}")
    return cast(F, wrapt.FunctionWrapper(fn, _task_wrapper))
