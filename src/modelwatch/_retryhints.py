"""Read the retry hints a failed call carries: ``Retry-After`` (seconds or HTTP-date),
``retry-after-ms``, a Hugging Face 503's ``estimated_time``, and the remaining rate-limit
quota from response headers. Nothing here ever raises.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from modelwatch._classify import MAX_DEPTH, _attr, _inner, response_headers, status_code

__all__ = ["parse_retry_after", "rate_limit_ratios", "retry_after_s"]


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value.

    Accepts delta-seconds (``"120"``, also ``"1.5"``) and an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``), measured from ``now`` (a Unix time; default
    :func:`time.time`). A date in the past gives ``0.0``. Negative, infinite or unreadable
    values give ``None``.
    """
    try:
        text = value.strip()
        if not text:
            return None
        if text[0].isdigit() or text[0] in "+-.":
            seconds = float(text)
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:  # RFC 9110: HTTP-dates are GMT
            return None
        delay = when.timestamp() - (time.time() if now is None else now)
        return max(delay, 0.0)
    except Exception:
        return None


def _estimated_time(exc: BaseException) -> float | None:
    """The ``estimated_time`` of a Hugging Face 503 "model is loading" body."""
    response = _attr(exc, "response")
    if response is None:
        return None
    try:
        body = response.json()
    except Exception:
        return None
    value = body.get("estimated_time") if isinstance(body, Mapping) else None
    if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _retry_after_here(exc: BaseException, now: float | None) -> float | None:
    own = _attr(exc, "retry_after_s")  # CircuitOpenError, AllBackendsFailedError
    if isinstance(own, (int, float)) and not isinstance(own, bool) and own >= 0:
        return float(own)
    headers = response_headers(exc)
    if headers:
        ms = _number(headers.get("retry-after-ms", ""))
        if ms is not None and ms >= 0:
            return ms / 1000.0
        header = headers.get("retry-after")
        if header is not None:
            seconds = parse_retry_after(header, now=now)
            if seconds is not None:
                return seconds
    if status_code(exc) == 503:
        return _estimated_time(exc)
    return None


def retry_after_s(exc: BaseException, *, now: float | None = None) -> float | None:
    """How long the failed call says to wait before retrying, in seconds, or ``None``.

    In order: a ``retry_after_s`` attribute (modelwatch's own errors), the response's
    ``retry-after-ms`` header (milliseconds, OpenAI style), its ``Retry-After`` header
    (seconds or HTTP-date, measured from ``now``), and the ``estimated_time`` of a
    Hugging Face 503 "model is loading" body. Wrapped exceptions are searched too.
    Never raises.
    """
    try:
        seen: set[int] = set()
        pending = [(exc, 0)]
        while pending:
            current, depth = pending.pop(0)
            if id(current) in seen:
                continue
            seen.add(id(current))
            found = _retry_after_here(current, now)
            if found is not None:
                return found
            if depth < MAX_DEPTH:
                pending.extend((inner, depth + 1) for inner in _inner(current))
        return None
    except Exception:
        return None


_IETF_RATELIMIT = re.compile(r'"?(?P<name>[\w-]+)"?\s*;\s*r\s*=\s*(?P<r>\d+)')
_IETF_POLICY = re.compile(r'"?(?P<name>[\w-]+)"?\s*;\s*q\s*=\s*(?P<q>\d+)')


def _number(value: object) -> float | None:
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def rate_limit_ratios(headers: Mapping[str, str]) -> dict[str, float]:
    """Remaining/limit per rate-limited resource, from response headers, each in [0, 1].

    Pairs ``x-ratelimit-remaining-<resource>`` with ``x-ratelimit-limit-<resource>``
    (OpenAI, Groq, Together...: ``requests``, ``tokens``...), and reads the IETF draft
    ``RateLimit: "api";r=0;t=55`` with ``RateLimit-Policy: "fixed window";"api";q=500``
    (Hugging Face). Names are case-insensitive; unreadable or zero limits are skipped.

    >>> rate_limit_ratios({"x-ratelimit-limit-requests": "100",
    ...                    "x-ratelimit-remaining-requests": "25"})
    {'requests': 0.25}
    """
    ratios: dict[str, float] = {}
    try:
        lower = {str(k).lower(): str(v) for k, v in headers.items()}
    except Exception:
        return ratios
    prefix = "x-ratelimit-remaining-"
    for key, value in lower.items():
        if not key.startswith(prefix):
            continue
        resource = key[len(prefix) :]
        remaining = _number(value)
        limit = _number(lower.get(f"x-ratelimit-limit-{resource}", ""))
        if remaining is not None and limit is not None and limit > 0:
            ratios[resource] = min(max(remaining / limit, 0.0), 1.0)
    state, policy = lower.get("ratelimit"), lower.get("ratelimit-policy")
    if state and policy:
        limits = {m["name"]: int(m["q"]) for m in _IETF_POLICY.finditer(policy)}
        for match in _IETF_RATELIMIT.finditer(state):
            quota = limits.get(match["name"]) or (next(iter(limits.values()), 0))
            if quota > 0:
                ratios.setdefault(match["name"], min(int(match["r"]) / quota, 1.0))
    return ratios
