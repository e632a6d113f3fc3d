"""Map any exception to an error kind (the retry hints a failed call carries are read by
:mod:`modelwatch._retryhints`, on this module's status and header readers).

:func:`classify` returns one of :data:`modelwatch.errorkinds.KINDS`; it is the
``error.type`` of spans and metrics and drives the router (docs/router.md,
``modelwatch.errorkinds``). It understands the real exception types of ``httpx`` (and
``httpx2``), ``httpcore``, ``requests``, ``urllib3``, ``huggingface_hub``, ``openai`` (and
``anthropic``), ``aiohttp``, ``tenacity``, asyncio and the builtins, plus anything that
carries an HTTP status code.

None of those libraries is imported: classes are recognised by the top-level package and
name of each class in the exception's MRO, and the answer is cached per type, so a
classification costs a few attribute reads and dict lookups. That keeps the optional
dependencies optional and the cost of a failed call low. Nothing here ever raises.

Decision order:

1. modelwatch's own errors and cancellation;
2. an HTTP status code on the exception (``.status_code``, ``.status``,
   ``.response.status_code``), with a context-length message read as ``bad_request``;
3. the class table below (timeouts, connection failures, typed SDK errors);
4. for wrappers and unknown types, the wrapped exceptions (``__cause__``, ``__context__``,
   ``MaxRetryError.reason``, ``tenacity.RetryError``'s last attempt, exception groups),
   at most :data:`MAX_DEPTH` levels deep;
5. ``_OTHER``.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import re
import socket
from collections.abc import Iterator, Mapping
from typing import Any, Final

from modelwatch import errorkinds, semconv
from modelwatch.errors import AllBackendsFailedError, CircuitOpenError, StreamInterruptedError

__all__ = [
    "MAX_DEPTH",
    "classify",
    "response_headers",
    "status_code",
]

RATE_LIMITED: Final = semconv.ERROR_RATE_LIMITED
TIMEOUT: Final = semconv.ERROR_TIMEOUT
UNAVAILABLE: Final = semconv.ERROR_UNAVAILABLE
AUTH: Final = semconv.ERROR_AUTH
NOT_FOUND: Final = semconv.ERROR_NOT_FOUND
BAD_REQUEST: Final = semconv.ERROR_BAD_REQUEST
CANCELLED: Final = semconv.ERROR_CANCELLED
OTHER: Final = semconv.ERROR_OTHER

#: How many wrapped exceptions deep :func:`classify` and :func:`retry_after_s` look.
MAX_DEPTH: Final = 5

#: Characters of an error message searched for a context-length complaint.
_MESSAGE_SCAN_CHARS: Final = 4000

_CONTEXT_LENGTH = re.compile(
    r"context[ _-]?length|context window|maximum context|prompt is too long"
    r"|input is too long|too many (?:input )?tokens|tokens? \+ `?max_new_tokens`? must be"
    r"|maximum (?:input|sequence) length",
    re.IGNORECASE,
)

# Packages whose classes share their twin's names and meaning.
_PACKAGE_ALIASES: Final = {
    "httpx2": "httpx",
    "httpcore2": "httpcore",
    "anthropic": "openai",
}

#: (top-level package, class name) -> kind. The first class of the MRO found here decides.
#: ``None`` marks a status-carrying base class: its status decides, not its name.
_CLASS_KINDS: Final[dict[tuple[str, str], str | None]] = {
    # httpx / httpx2 and their transports httpcore / httpcore2
    **{
        (pkg, name): TIMEOUT
        for pkg in ("httpx", "httpcore")
        for name in ("TimeoutException", "ConnectTimeout", "ReadTimeout", "WriteTimeout")
    },
    **{(pkg, name): TIMEOUT for pkg in ("httpx", "httpcore") for name in ("PoolTimeout",)},
    **{
        (pkg, name): UNAVAILABLE
        for pkg in ("httpx", "httpcore")
        for name in (
            "NetworkError",
            "ConnectError",
            "ReadError",
            "WriteError",
            "CloseError",
            "RemoteProtocolError",
            "ProxyError",
        )
    },
    ("httpx", "HTTPStatusError"): None,
    # openai (and anthropic, same names)
    ("openai", "APITimeoutError"): TIMEOUT,
    ("openai", "APIConnectionError"): UNAVAILABLE,
    ("openai", "RateLimitError"): RATE_LIMITED,
    ("openai", "AuthenticationError"): AUTH,
    ("openai", "PermissionDeniedError"): AUTH,
    ("openai", "NotFoundError"): NOT_FOUND,
    ("openai", "BadRequestError"): BAD_REQUEST,
    ("openai", "UnprocessableEntityError"): BAD_REQUEST,
    ("openai", "InternalServerError"): UNAVAILABLE,
    ("openai", "OverloadedError"): UNAVAILABLE,
    ("openai", "APIStatusError"): None,
    # huggingface_hub
    ("huggingface_hub", "InferenceTimeoutError"): TIMEOUT,
    ("huggingface_hub", "InferenceEndpointTimeoutError"): TIMEOUT,
    ("huggingface_hub", "RepositoryNotFoundError"): NOT_FOUND,
    ("huggingface_hub", "RevisionNotFoundError"): NOT_FOUND,
    ("huggingface_hub", "GatedRepoError"): AUTH,
    ("huggingface_hub", "BadRequestError"): BAD_REQUEST,
    ("huggingface_hub", "HfHubHTTPError"): None,
    # requests and urllib3
    ("requests", "ConnectTimeout"): TIMEOUT,
    ("requests", "ReadTimeout"): TIMEOUT,
    ("requests", "Timeout"): TIMEOUT,
    ("requests", "ChunkedEncodingError"): UNAVAILABLE,
    ("requests", "HTTPError"): None,
    ("urllib3", "TimeoutError"): TIMEOUT,
    ("urllib3", "NewConnectionError"): UNAVAILABLE,
    ("urllib3", "ProtocolError"): UNAVAILABLE,
    ("urllib3", "ProxyError"): UNAVAILABLE,
    # aiohttp
    ("aiohttp", "ServerTimeoutError"): TIMEOUT,
    ("aiohttp", "ConnectionTimeoutError"): TIMEOUT,
    ("aiohttp", "SocketTimeoutError"): TIMEOUT,
    ("aiohttp", "ClientConnectionError"): UNAVAILABLE,
    ("aiohttp", "ClientPayloadError"): UNAVAILABLE,
    ("aiohttp", "ClientResponseError"): None,
    # trio / anyio cancellation
    ("trio", "Cancelled"): CANCELLED,
}

#: Wrappers: the wrapped exception decides; the value is the kind if it does not.
_WRAPPER_FALLBACKS: Final[dict[tuple[str, str], str]] = {
    # huggingface_hub's TGI errors are raised ``from`` the HfHubHTTPError with the status
    ("huggingface_hub", "ValidationError"): BAD_REQUEST,
    ("huggingface_hub", "OverloadedError"): RATE_LIMITED,
    ("huggingface_hub", "IncompleteGenerationError"): UNAVAILABLE,
    ("huggingface_hub", "GenerationError"): OTHER,
    ("huggingface_hub", "UnknownError"): OTHER,
    ("urllib3", "MaxRetryError"): UNAVAILABLE,
    # requests wraps urllib3's error in args[0]: a read timeout while streaming arrives as
    # ConnectionError(ReadTimeoutError(...))
    ("requests", "ConnectionError"): UNAVAILABLE,
    ("requests", "RetryError"): OTHER,
    ("tenacity", "RetryError"): OTHER,
    ("openai", "APIError"): OTHER,
    ("builtins", "BaseExceptionGroup"): OTHER,
}

#: ``BaseExceptionGroup`` where it exists (Python 3.11+); ``isinstance(x, ())`` is False.
_GROUP: Final[Any] = getattr(builtins, "BaseExceptionGroup", ())

_type_cache: dict[type, tuple[str | None, str | None]] = {}
_TYPE_CACHE_MAX: Final = 2048


def _attr(obj: object, name: str) -> Any:
    """``getattr`` that survives properties raising anything."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _http_status(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return int(value)
    return None


def status_code(exc: BaseException) -> int | None:
    """The HTTP status code ``exc`` carries, if any.

    Reads ``exc.status_code`` (openai, FastAPI), ``exc.status`` (aiohttp, urllib) and
    ``exc.response.status_code`` / ``.status`` (httpx, requests, huggingface_hub).
    Only integers in 100..599 count. Never raises.
    """
    for name in ("status_code", "status"):
        found = _http_status(_attr(exc, name))
        if found is not None:
            return found
    response = _attr(exc, "response")
    if response is None:
        return None
    for name in ("status_code", "status"):
        found = _http_status(_attr(response, name))
        if found is not None:
            return found
    return None


def response_headers(exc: BaseException) -> Mapping[str, str] | None:
    """The HTTP response headers ``exc`` carries, with lower-case names, or ``None``.

    Reads ``exc.response.headers`` (httpx, requests, huggingface_hub, openai) or
    ``exc.headers`` (aiohttp, urllib). Never raises.
    """
    response = _attr(exc, "response")
    headers = _attr(response, "headers") if response is not None else None
    if headers is None:
        headers = _attr(exc, "headers")
    if headers is None:
        return None
    try:
        items = headers.items()
        return {str(k).lower(): str(v) for k, v in items}
    except Exception:
        return None


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)[:_MESSAGE_SCAN_CHARS]
    except Exception:
        return ""
    body = _attr(exc, "body")  # openai keeps the decoded error body apart from the message
    if isinstance(body, Mapping):
        text += " " + " ".join(str(body.get(key, "")) for key in ("code", "message"))
    # httpx and requests keep a body already read in ``_content``; reading ``.text`` could
    # block on a streamed response, so only a body that is already there is looked at.
    content = _attr(_attr(exc, "response"), "_content")
    if isinstance(content, bytes):
        text += " " + content[:_MESSAGE_SCAN_CHARS].decode("utf-8", "replace")
    return text


def _kind_for_status(status: int, exc: BaseException) -> str:
    if status == 429:
        return RATE_LIMITED
    if status in (401, 403):
        return AUTH
    if status >= 400 and status != 404 and _CONTEXT_LENGTH.search(_message(exc)):
        return BAD_REQUEST
    if status in (408, 504):
        return TIMEOUT
    if status >= 500:
        return UNAVAILABLE
    if status in (402, 407):  # payment required (credits exhausted), proxy auth
        return AUTH
    if status in (404, 410):
        return NOT_FOUND
    if status in (400, 413, 422):
        return BAD_REQUEST
    return OTHER


def _package(cls: type) -> str:
    top = cls.__module__.partition(".")[0]
    return _PACKAGE_ALIASES.get(top, top)


def _type_info(cls: type) -> tuple[str | None, str | None]:
    """What the type alone says, cached: ``(kind, wrapper_fallback)``.

    ``kind`` is ``None`` when the type does not decide (a status-carrying base class, a
    wrapper, an unknown type); ``wrapper_fallback`` is set for wrappers, whose wrapped
    exceptions decide first.
    """
    try:
        return _type_cache[cls]
    except KeyError:
        pass
    kind: str | None = None
    fallback: str | None = None
    for klass in cls.__mro__:
        key = (_package(klass), klass.__name__)
        if key in _WRAPPER_FALLBACKS:
            fallback = _WRAPPER_FALLBACKS[key]
            break
        if key in _CLASS_KINDS:
            kind = _CLASS_KINDS[key]
            break
    if kind is None and fallback is None:
        kind = _builtin_kind(cls)
    info = (kind, fallback)
    if len(_type_cache) < _TYPE_CACHE_MAX:
        _type_cache[cls] = info
    return info


def _builtin_kind(cls: type) -> str | None:
    if issubclass(cls, (asyncio.CancelledError, concurrent.futures.CancelledError)):
        return CANCELLED
    if issubclass(cls, CircuitOpenError):
        return UNAVAILABLE
    if issubclass(cls, TimeoutError):  # also socket.timeout, asyncio/futures TimeoutError
        return TIMEOUT
    if issubclass(cls, (ConnectionError, socket.gaierror)):
        return UNAVAILABLE
    return None


def _inner(exc: BaseException) -> Iterator[BaseException]:
    """Exceptions ``exc`` wraps, most telling first."""
    if _type_info(type(exc))[1] is not None:  # a known wrapper: look where it keeps the error
        if isinstance(exc, _GROUP):
            yield from exc.exceptions
        reason = _attr(exc, "reason")  # urllib3.MaxRetryError
        if isinstance(reason, BaseException):
            yield reason
        attempt = _attr(exc, "last_attempt")  # tenacity.RetryError
        if attempt is not None:
            try:
                last = attempt.exception()
            except Exception:
                last = None
            if isinstance(last, BaseException):
                yield last
        yield from (arg for arg in exc.args[:2] if isinstance(arg, BaseException))
    if exc.__cause__ is not None:
        yield exc.__cause__
    if exc.__context__ is not None and not exc.__suppress_context__:
        yield exc.__context__


def _direct(exc: BaseException) -> str | None:
    """The kind ``exc`` itself shows, or ``None`` if it is generic or a wrapper."""
    if isinstance(exc, AllBackendsFailedError):
        if exc.attempts and exc.attempts[-1].error_kind in errorkinds.KINDS:
            return exc.attempts[-1].error_kind
        return UNAVAILABLE
    if isinstance(exc, StreamInterruptedError):
        return exc.kind if exc.kind in errorkinds.KINDS else UNAVAILABLE
    kind = _type_info(type(exc))[0]
    if kind == CANCELLED:  # before any status: a cancelled call is not a failure
        return kind
    status = status_code(exc)
    if status is not None:
        return _kind_for_status(status, exc)
    return kind


def _classify(exc: BaseException, depth: int, seen: set[int]) -> str:
    seen.add(id(exc))
    kind = _direct(exc)
    if kind is not None:
        return kind
    if depth < MAX_DEPTH:
        for inner in _inner(exc):
            if id(inner) in seen:
                continue
            found = _classify(inner, depth + 1, seen)
            if found != OTHER:
                return found
    return _type_info(type(exc))[1] or OTHER


def classify(exc: BaseException) -> str:
    """The error kind of ``exc``: one of :data:`modelwatch.errorkinds.KINDS`.

    ``rate_limited``, ``timeout``, ``unavailable``, ``auth``, ``not_found``,
    ``bad_request``, ``cancelled`` or ``_OTHER`` (``modelwatch.errorkinds``). Status codes: 429
    rate_limited; 408 and 504 timeout; other 5xx unavailable; 401, 403 (and 402, 407) auth;
    404 and 410 not_found; 400, 413, 422, and any error whose message says the context
    length was exceeded, bad_request. Never raises.

    >>> classify(TimeoutError())
    'timeout'
    """
    try:
        return _classify(exc, 0, set())
    except Exception:
        return OTHER
