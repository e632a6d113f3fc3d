"""Carry the current trace and monitored call into thread pools.

``asyncio`` tasks (``gather``, ``TaskGroup``, ``create_task``) and ``asyncio.to_thread`` copy
the caller's :mod:`contextvars` context, so spans started there are children of the caller's
span with no help. ``concurrent.futures`` executors, ``loop.run_in_executor`` and bare
``threading.Thread`` do *not*: work submitted there starts a new trace, and an agent step's
model calls fall out of it. :func:`propagate` and :func:`context_executor` fix that.

>>> from concurrent.futures import ThreadPoolExecutor
>>> import modelwatch
>>> with modelwatch.context_executor(ThreadPoolExecutor(max_workers=2)) as pool:
...     list(pool.map(len, ["ab", "c"]))
[2, 1]
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

__all__ = ["context_executor", "propagate"]


def propagate(fn: Callable[P, R]) -> Callable[P, R]:
    """Bind ``fn`` to the caller's context *now*, to run later in another thread.

    The returned callable runs ``fn`` in a copy of the context that was current when
    :func:`propagate` was called (current span, current :class:`~modelwatch.Call`, and every
    other context variable), so spans it starts are children of the caller's span. Each call
    gets its own copy, so the result may run concurrently in several threads.

    >>> import threading
    >>> import modelwatch
    >>> with modelwatch.agent_step("planner"):
    ...     worker = threading.Thread(target=modelwatch.propagate(lambda: None))
    ...     worker.start()
    >>> worker.join()
    """
    if not callable(fn):
        raise TypeError(f"propagate() takes a callable, got {type(fn).__name__}")
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_captured_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run_in_captured_context


class _ContextExecutor(Executor):
    """An executor that runs each submitted callable in the submitter's context."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    @property
    def wrapped(self) -> Executor:
        """The executor that does the work."""
        return self._executor

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` in a copy of the caller's current context."""
        context = contextvars.copy_context()
        return self._executor.submit(functools.partial(context.run, fn, *args, **kwargs))

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """Like :meth:`concurrent.futures.Executor.map`; each item runs in the caller's context."""
        return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the wrapped executor down (see :meth:`concurrent.futures.Executor.shutdown`)."""
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __repr__(self) -> str:
        return f"context_executor({self._executor!r})"


def context_executor(executor: Executor) -> Executor:
    """Wrap a :class:`concurrent.futures.Executor` so submitted work keeps the caller's context.

    ``submit`` and ``map`` copy the context current at submission (current span and
    :class:`~modelwatch.Call`), so model calls and steps run in the pool become children of
    the step that submitted them. ``shutdown`` and ``with`` reach the wrapped executor.
    Meant for thread pools; a process pool cannot carry a context object across processes.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> import modelwatch
    >>> pool = modelwatch.context_executor(ThreadPoolExecutor(max_workers=1))
    >>> pool.submit(sum, [1, 2]).result()
    3
    >>> pool.shutdown()
    """
    if not isinstance(executor, Executor):
        raise TypeError(
            f"context_executor() takes a concurrent.futures.Executor, got {type(executor).__name__}"
        )
    if isinstance(executor, _ContextExecutor):
        return executor
    return _ContextExecutor(executor)
