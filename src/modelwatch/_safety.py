"""The never-break-the-host guard: modelwatch's own failures cost telemetry, never correctness.

Every place where modelwatch code runs inside a user's call goes through :func:`guard`
(a with-block) or :func:`guarded` (a decorator). Both swallow any ``Exception`` raised by
modelwatch itself and log one ``modelwatch.internal_error`` event per site, at most once a
minute per site, so a broken exporter cannot flood the host's logs either.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import structlog

from modelwatch.capture.scrub import scrub_line

P = ParamSpec("P")
R = TypeVar("R")

logger = structlog.get_logger("modelwatch")

#: How often one site may log an internal error.
LOG_INTERVAL_S = 60.0

_last_logged: dict[str, float] = {}
_suppressed: dict[str, int] = {}
_lock = threading.Lock()


def report_internal_error(site: str, exc: BaseException) -> None:
    """Log an internal error of ``site`` (rate-limited); never raises."""
    try:
        now = time.monotonic()
        with _lock:
            last = _last_logged.get(site)
            if last is not None and now - last < LOG_INTERVAL_S:
                _suppressed[site] = _suppressed.get(site, 0) + 1
                return
            _last_logged[site] = now
            suppressed = _suppressed.pop(site, 0)
        logger.warning(
            "modelwatch.internal_error",
            site=site,
            error=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=scrub_line(str(exc)),
            suppressed_since_last=suppressed,
        )
    except Exception:  # noqa: S110 - the logger itself is broken: stay silent, never break the host
        pass


def log_due(site: str) -> bool:
    """Whether an internal error of ``site`` would be logged now (a cheap, lock-free check,
    so a hot failure path can skip building its message when it would be suppressed)."""
    last = _last_logged.get(site)
    if last is None or time.monotonic() - last >= LOG_INTERVAL_S:
        return True
    _suppressed[site] = _suppressed.get(site, 0) + 1
    return False


def reset_internal_error_log() -> None:
    """Forget the rate-limit state (for tests)."""
    with _lock:
        _last_logged.clear()
        _suppressed.clear()


@contextmanager
def guard(site: str) -> Iterator[None]:
    """Run a block of modelwatch code; swallow and report any ``Exception`` it raises."""
    try:
        yield
    except Exception as exc:
        report_internal_error(site, exc)


def guarded(site: str, default: R) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a modelwatch-internal function so it returns ``default`` instead of raising."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                report_internal_error(site, exc)
                return default

        return wrapper

    return decorate
