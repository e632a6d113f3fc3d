"""Plain-Python backends and a classifier for router tests (no network, no sleeps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelwatch import semconv


class HTTPError(Exception):
    """A fake provider error with a status code and an optional Retry-After."""

    def __init__(self, status: int, retry_after_s: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


KINDS = {
    400: semconv.ERROR_BAD_REQUEST,
    401: semconv.ERROR_AUTH,
    404: semconv.ERROR_NOT_FOUND,
    429: semconv.ERROR_RATE_LIMITED,
    500: semconv.ERROR_UNAVAILABLE,
    503: semconv.ERROR_UNAVAILABLE,
}


def classify(exc: BaseException) -> str:
    """The router's decision table for the fakes above (the real one is modelwatch.classify)."""
    if isinstance(exc, HTTPError):
        return KINDS[exc.status]
    if isinstance(exc, TimeoutError):
        return semconv.ERROR_TIMEOUT
    if isinstance(exc, ConnectionError):
        return semconv.ERROR_UNAVAILABLE
    return semconv.ERROR_OTHER


class Scripted:
    """A backend that plays a script of outcomes (exceptions raise, values return)."""

    def __init__(self, name: str, *script: Any, default: Any = None) -> None:
        self.name = name
        self.script = list(script)
        self.default = default if default is not None else f"{name}-ok"
        self.calls: list[tuple[Any, ...]] = []

    def _next(self) -> Any:
        """The next outcome; a callable default is a factory (a fresh exception per call,
        so tracebacks do not pile up on one object)."""
        if self.script:
            return self.script.pop(0)
        return self.default() if callable(self.default) else self.default

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(args)
        outcome = self._next()
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return outcome()
        return outcome


class AsyncScripted(Scripted):
    async def __call__(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls.append(args)
        outcome = self._next()
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            result = outcome()
            if hasattr(result, "__await__"):
                return await result
            return result
        return outcome


def raising(exc: BaseException) -> Callable[[], Any]:
    def go() -> Any:
        raise exc

    return go
