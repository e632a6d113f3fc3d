"""Resilience events as hooks: one stream of frozen event records, any number of listeners.

The breaker guard and the router say *what happened* by emitting an event record
(:class:`BreakerTransition`, :class:`CallRejected`, :class:`ProbeResult`, :class:`Failover`,
:class:`Retry`, :class:`Hedge`); what is *done* about it is up to the listeners. The
OpenTelemetry output (metrics and span events) and the structlog output are the two default
listeners (:mod:`modelwatch.resilience._listeners`); the demo's recorder, a test, or a
user's own alerting hook is one more. This is stamina's instrumentation-hook idea
(``RetryDetails`` records, ``RetryHook`` callables, a lazily built ``RetryHookFactory``)
applied to breakers and routers.

>>> from modelwatch.resilience import hooks
>>> seen = []
>>> hooks.add_listener(seen.append)
>>> hooks.emit(hooks.Failover(router="chat", from_model="a", to_model="b", reason="timeout"))
>>> seen[0].to_model
'b'
>>> hooks.remove_listener(seen.append)

Listeners run synchronously on the thread (and inside the span) where the event happened, so
they must be quick; each one is guarded: an exception in a listener is reported once as an
internal error and never reaches the call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

from modelwatch._safety import report_internal_error

__all__ = [
    "BreakerTransition",
    "CallRejected",
    "Event",
    "Failover",
    "Hedge",
    "Listener",
    "ListenerFactory",
    "ProbeResult",
    "Retry",
    "add_listener",
    "emit",
    "get_listeners",
    "remove_listener",
    "reset_listeners",
    "set_listeners",
]


@dataclass(frozen=True)
class BreakerTransition:
    """A breaker changed state.

    ``reason`` is one of the transition reasons of ``docs/router.md`` (``consecutive_failures``,
    ``trial_failed``, ``shared_state`` ...); ``retry_after_s`` is set when it opened;
    ``at`` is the wall-clock time of the change (epoch seconds), stamped when it happened.
    """

    breaker: str
    from_state: str
    to_state: str
    reason: str
    generation: int
    retry_after_s: float | None
    router: str | None = None
    model: str | None = None
    last_error: str | None = None
    at: float = 0.0


@dataclass(frozen=True)
class CallRejected:
    """A call was refused without running: ``reason`` is ``circuit_open``, ``rate_limited``
    (a benched backend) or ``budget`` (a spent cost budget)."""

    breaker: str
    reason: str
    retry_after_s: float | None
    router: str | None = None
    model: str | None = None
    span: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ProbeResult:
    """A background recovery probe of an open breaker ended: ``ok``, or failed with ``kind``."""

    breaker: str
    ok: bool
    kind: str | None
    duration_s: float
    router: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Failover:
    """A routed call moved on from ``from_model`` (failed or refused for ``reason``) to
    ``to_model``."""

    router: str
    from_model: str
    to_model: str
    reason: str
    span: Any = field(default=None, compare=False, repr=False)
    #: the router's SLO tier (``Router(tier=...)``), if it has one
    tier: str | None = None


@dataclass(frozen=True)
class Retry:
    """A routed call is about to retry ``model`` (attempt ``attempt``) after ``wait_s``."""

    router: str
    model: str
    attempt: int
    wait_s: float
    reason: str
    span: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Hedge:
    """A routed call started ``backup_model`` alongside ``model``, which had not answered
    after ``delay_s``."""

    router: str
    model: str
    backup_model: str
    delay_s: float
    span: Any = field(default=None, compare=False, repr=False)


#: Everything that flows through the stream. ``span`` (where present) is the span the event
#: belongs to; listeners use the current span when it is ``None``.
Event: TypeAlias = BreakerTransition | CallRejected | ProbeResult | Failover | Retry | Hedge


@runtime_checkable
class Listener(Protocol):
    """Called with every event; the return value is ignored."""

    def __call__(self, event: Event) -> None:
        """React to ``event`` (quickly: it runs on the caller's thread)."""
        ...


@dataclass(frozen=True)
class ListenerFactory:
    """A listener built on the first event (e.g. one that imports a heavy client)."""

    build: Callable[[], Listener]


_lock = threading.Lock()
_registered: tuple[Listener | ListenerFactory, ...] = ()
_active: tuple[Listener, ...] | None = None  # the built listeners, None until first emit


def _defaults() -> tuple[Listener | ListenerFactory, ...]:
    from modelwatch.resilience._listeners import LogListener, otel_listener

    return (otel_listener, LogListener())


def set_listeners(listeners: Iterable[Listener | ListenerFactory]) -> None:
    """Replace every listener, the default OpenTelemetry and structlog ones included
    (``set_listeners([])`` silences the stream)."""
    global _registered, _active
    with _lock:
        _registered = tuple(listeners)
        _active = None


def reset_listeners() -> None:
    """Back to the default listeners, freshly built (tests)."""
    set_listeners(_defaults())


def get_listeners() -> tuple[Listener | ListenerFactory, ...]:
    """The listeners in call order (factories as registered)."""
    return _registered


def add_listener(listener: Listener | ListenerFactory) -> None:
    """Call ``listener(event)`` for every event from now on, after the ones already there."""
    set_listeners((*_registered, listener))


def remove_listener(listener: Listener | ListenerFactory) -> None:
    """Stop calling ``listener`` (no error if it was not registered)."""
    set_listeners(tuple(x for x in _registered if x != listener))


def _build() -> tuple[Listener, ...]:
    global _active
    with _lock:
        if _active is None:
            built: list[Listener] = []
            for item in _registered:
                if isinstance(item, ListenerFactory):
                    try:
                        built.append(item.build())
                    except Exception as exc:
                        report_internal_error("hooks.factory", exc)
                else:
                    built.append(item)
            _active = tuple(built)
        return _active


def emit(event: Event) -> None:
    """Give ``event`` to every listener, in order; never raises."""
    listeners = _active if _active is not None else _build()
    for listener in listeners:
        try:
            listener(event)
        except Exception as exc:
            report_internal_error("hooks.listener", exc)


_registered = _defaults()
