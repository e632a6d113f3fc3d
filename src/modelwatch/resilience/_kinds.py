"""Error classification as the router sees it: a small Protocol and the default adapter.

The default delegates to :mod:`modelwatch._classify` (the library-wide decision table of
DESIGN.md §5). A router takes any ``Classifier``, e.g. to treat a provider's custom
exception as ``unavailable``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from modelwatch import semconv

__all__ = [
    "Classifier",
    "default_classify",
    "rate_limit_ratios",
    "response_headers",
    "retry_after_s",
]


@runtime_checkable
class Classifier(Protocol):
    """Maps an exception to an error kind (one of :data:`modelwatch.semconv.ERROR_KINDS`)."""

    def __call__(self, exc: BaseException) -> str:
        """The error kind of ``exc``."""
        ...


def _fallback_classify(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError | concurrent.futures.CancelledError):
        return semconv.ERROR_CANCELLED
    if isinstance(exc, TimeoutError):
        return semconv.ERROR_TIMEOUT
    if isinstance(exc, ConnectionError):
        return semconv.ERROR_UNAVAILABLE
    return semconv.ERROR_OTHER


def default_classify(exc: BaseException) -> str:
    """``modelwatch._classify.classify(exc)``, with a minimal fallback if it is unavailable."""
    try:
        from modelwatch._classify import classify  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - the module ships with the package
        return _fallback_classify(exc)
    try:
        kind = classify(exc)
    except Exception:
        return _fallback_classify(exc)
    return kind if kind in semconv.ERROR_KINDS else semconv.ERROR_OTHER


def retry_after_s(exc: BaseException) -> float | None:
    """The ``Retry-After`` an error carries, in seconds, if any.

    An exception with a numeric ``retry_after_s`` attribute (like
    :class:`~modelwatch.CircuitOpenError`) is taken at its word; otherwise the HTTP
    response's ``Retry-After`` header is read by :mod:`modelwatch._classify`.
    """
    own = getattr(exc, "retry_after_s", None)
    if isinstance(own, int | float) and not isinstance(own, bool):
        return max(0.0, float(own))
    try:
        from modelwatch._classify import retry_after_s as find
    except ImportError:  # pragma: no cover
        return getattr(exc, "retry_after_s", None)
    try:
        value = find(exc)
    except Exception:
        return None
    return None if value is None else max(0.0, float(value))


def response_headers(source: Any) -> Mapping[str, str] | None:
    """HTTP response headers carried by an exception or a result, if any."""
    try:
        if isinstance(source, BaseException):
            from modelwatch._classify import response_headers as find

            found = find(source)
            return found if found else None
        headers = getattr(source, "headers", None)
        return headers if isinstance(headers, Mapping) else None
    except Exception:
        return None


def rate_limit_ratios(headers: Mapping[str, str]) -> dict[str, float]:
    """``{resource: remaining / limit}`` from ``x-ratelimit-*`` headers."""
    try:
        from modelwatch._classify import rate_limit_ratios as ratios

        return dict(ratios(headers))
    except Exception:
        return {}
