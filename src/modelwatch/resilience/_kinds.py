"""Error classification as the router sees it: a small Protocol and the default adapter.

The default is :func:`modelwatch.classify` (the library-wide decision table; what each
kind means is :mod:`modelwatch.errorkinds`). A router or a ``circuit`` takes any
``Classifier``, e.g. to treat a provider's custom exception as ``unavailable``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from modelwatch import _classify, _retryhints, errorkinds, semconv

__all__ = [
    "Classifier",
    "default_classify",
    "rate_limit_ratios",
    "response_headers",
    "retry_after_s",
]


@runtime_checkable
class Classifier(Protocol):
    """Maps an exception to an error kind (one of :data:`modelwatch.errorkinds.KINDS`)."""

    def __call__(self, exc: BaseException) -> str:
        """The error kind of ``exc``."""
        ...


def default_classify(exc: BaseException) -> str:
    """:func:`modelwatch.classify`, narrowed to the known kinds."""
    kind = _classify.classify(exc)
    return kind if kind in errorkinds.KINDS else semconv.ERROR_OTHER


def retry_after_s(exc: BaseException) -> float | None:
    """The wait an error asks for, in seconds: its own ``retry_after_s`` attribute, the
    ``Retry-After`` (or ``retry-after-ms``) header, or a Hugging Face ``estimated_time``."""
    value = _retryhints.retry_after_s(exc)
    return None if value is None else max(0.0, float(value))


def response_headers(source: Any) -> Mapping[str, str] | None:
    """HTTP response headers carried by an exception or a result, if any."""
    if isinstance(source, BaseException):
        return _classify.response_headers(source)
    headers = getattr(source, "headers", None)
    if headers is None:
        return None
    try:
        return {str(k).lower(): str(v) for k, v in headers.items()}
    except Exception:
        return None


def rate_limit_ratios(headers: Mapping[str, str]) -> dict[str, float]:
    """``{resource: remaining / limit}`` from ``x-ratelimit-*`` (or IETF) headers."""
    return _retryhints.rate_limit_ratios(headers)
