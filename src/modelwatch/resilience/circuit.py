"""``modelwatch.circuit(name)``: a named breaker around any risky code.

The same guard the router uses, as a decorator (sync and ``async def``) and as a ``with`` /
``async with`` block, for databases, vector stores, internal APIs. While the breaker is
open the code does not run and :class:`~modelwatch.CircuitOpenError` is raised instead.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from modelwatch import semconv
from modelwatch._clock import Clock
from modelwatch._safety import report_internal_error
from modelwatch.capture._bounded import OVERFLOW_ATTRIBUTES, BoundedKeys
from modelwatch.errors import CircuitOpenError, ConfigurationError
from modelwatch.resilience import hooks
from modelwatch.resilience._kinds import Classifier, default_classify
from modelwatch.resilience.breaker import Breaker, Permit
from modelwatch.resilience.policy import BreakerPolicy

__all__ = ["circuit", "get_breaker", "reset_circuits"]

P = ParamSpec("P")
R = TypeVar("R")

_named: dict[str, Breaker] = {}
_named_lock = threading.Lock()
#: names kept; past the cardinality limit, further names share one overflow breaker
_names = BoundedKeys("circuit names", overflow="")
#: the name of the breaker shared by names past the limit
OVERFLOW_CIRCUIT = "_overflow"
# (circuit, permit, start) of the with-blocks open in this thread or task, innermost last
_open_blocks: contextvars.ContextVar[tuple[tuple[circuit, Permit | None, float], ...]] = (
    contextvars.ContextVar("modelwatch_circuit_blocks", default=())
)


def get_breaker(
    name: str, policy: BreakerPolicy | None = None, clock: Clock | None = None
) -> Breaker:
    """The process-wide breaker called ``name``, created on first use.

    Asking again with a *different* policy is a configuration error: two parts of a program
    disagreeing about one breaker should be loud, not silently resolved. Names are bounded
    (:data:`modelwatch.capture._bounded.CARDINALITY_LIMIT`): further names share one overflow
    breaker, exported with ``otel.metric.overflow=true``, and a warning is logged once.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"circuit(): name must be a non-empty string, got {name!r}")
    if policy is not None and not isinstance(policy, BreakerPolicy):
        raise ConfigurationError(
            f"circuit({name!r}): policy must be a BreakerPolicy, got {policy!r}"
        )
    with _named_lock:
        found = _named.get(name)
        if found is None and not _names.admit(name):
            name = OVERFLOW_CIRCUIT
            found = _named.get(name)
        if found is None:
            found = Breaker(name, policy, clock=clock)
            if name == OVERFLOW_CIRCUIT:
                found.metric_attributes = dict(OVERFLOW_ATTRIBUTES)
            _named[name] = found
        elif policy is not None and policy != found.policy:
            raise ConfigurationError(
                f"circuit {name!r} already exists with a different policy: "
                f"{found.policy!r} != {policy!r}"
            )
        return found


def reset_circuits() -> None:
    """Forget every named breaker (for tests)."""
    with _named_lock:
        _named.clear()
        _names.clear()


def note_rejection(breaker: Breaker) -> None:
    """Emit a :class:`~modelwatch.resilience.hooks.CallRejected` event (a span event on the
    current span by default); never raises."""
    try:
        hooks.emit(
            hooks.CallRejected(
                breaker.name,
                semconv.REASON_CIRCUIT_OPEN,
                breaker.retry_after_s,
                breaker.router,
                breaker.model,
            )
        )
    except Exception as exc:
        report_internal_error("circuit.rejection", exc)


class circuit:  # noqa: N801 - used like a function, as the docs spell it
    """A named circuit breaker, as a decorator or a ``with`` / ``async with`` block.

    >>> import modelwatch
    >>> @modelwatch.circuit("vector-store")
    ... def search(query: str) -> list[str]:
    ...     return ["doc-1"]
    >>> search("x")
    ['doc-1']
    >>> with modelwatch.circuit("postgres"):
    ...     pass

    Calls with the same ``name`` share one breaker. Exceptions are classified (see
    :func:`modelwatch.classify`); kinds in ``policy.ignore`` (cancellation, bad requests)
    never count. While open, :class:`~modelwatch.CircuitOpenError` is raised with the
    seconds until the next trial. ``classify`` replaces the default classifier.
    """

    __slots__ = ("_classify", "breaker")

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        *,
        classify: Classifier | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.breaker = get_breaker(name, policy, clock)
        self._classify: Classifier = classify if classify is not None else default_classify

    # ------------------------------------------------------------------ shared steps
    def _enter(self) -> Permit | None:
        """A permit, ``None`` if the guard itself failed (the call then runs unguarded),
        or :class:`CircuitOpenError`."""
        breaker = self.breaker
        try:
            permit = breaker.admit()
        except Exception as exc:
            report_internal_error("circuit.admit", exc)
            return None
        if permit is None:
            note_rejection(breaker)
            raise CircuitOpenError(breaker.name, breaker.retry_after_s)
        return permit

    def _exit(self, permit: Permit | None, start: float, exc: BaseException | None) -> None:
        if permit is None:
            return
        try:
            duration = time.perf_counter() - start
            if exc is None:
                self.breaker.record_success(permit, duration)
            elif not isinstance(exc, Exception):
                self.breaker.release(permit)  # CancelledError, KeyboardInterrupt, GeneratorExit
            else:
                self.breaker.record_failure(permit, self._classify(exc), duration)
        except Exception as internal:
            report_internal_error("circuit.record", internal)

    # ------------------------------------------------------------------ decorator
    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Guard every call of ``fn`` (a function or an ``async def``)."""
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"circuit({self.breaker.name!r}) guards calls, and a generator's work happens "
                "while it is iterated: use `with circuit(...):` around the risky part inside it"
            )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                permit = self._enter()
                start = time.perf_counter()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    self._exit(permit, start, exc)
                    raise
                self._exit(permit, start, None)
                return result

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            permit = self._enter()
            start = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._exit(permit, start, exc)
                raise
            self._exit(permit, start, None)
            return result

        return wrapper

    # ------------------------------------------------------------------ with-blocks
    def __enter__(self) -> Breaker:
        permit = self._enter()
        _open_blocks.set((*_open_blocks.get(), (self, permit, time.perf_counter())))
        return self.breaker

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        blocks = _open_blocks.get()
        for i in range(len(blocks) - 1, -1, -1):
            if blocks[i][0] is self:
                _, permit, start = blocks[i]
                _open_blocks.set(blocks[:i] + blocks[i + 1 :])
                self._exit(permit, start, exc)
                return
        report_internal_error("circuit.exit", RuntimeError("exit without a matching enter"))

    async def __aenter__(self) -> Breaker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"circuit({self.breaker.name!r})"
