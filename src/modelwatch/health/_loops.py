"""Which event loop async probes run on, and recognising the failure of a probe that ran on
the wrong one. Internal to :mod:`modelwatch.health`.

An async client (``httpx.AsyncClient``, ``huggingface_hub.AsyncInferenceClient``, an
``asyncio.Lock`` inside one) is bound to the loop it was first used on. A FastAPI app makes
one per app, on uvicorn's loop; a probe that awaits it on any other loop fails with
``RuntimeError: ... is bound to a different event loop``. So a registry started inside a
running loop (``await health.astart()`` or ``health.start()`` in the app's lifespan) runs its
async probes on that loop; one started elsewhere runs them on a private loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Final

import structlog

from modelwatch.errors import ConfigurationError

logger = structlog.get_logger("modelwatch")

#: What asyncio, anyio and httpx say when an object meets a loop it is not bound to.
_WRONG_LOOP_SIGNS: Final = (
    "different event loop",
    "attached to a different loop",
    "event loop is closed",
    "no running event loop",
)
WRONG_LOOP_PREFIX: Final = "wrong event loop: "
_WRONG_LOOP_HINT: Final = (
    " (start the Health inside the application's loop: await health.astart() in the lifespan, "
    "or health.start(loop=...))"
)


def resolve_loop(loop: object) -> asyncio.AbstractEventLoop | None:
    """The loop async probes will run on: ``loop`` if given, else the running loop of the
    calling thread, else ``None`` (a private loop thread)."""
    if loop is not None:
        if not isinstance(loop, asyncio.AbstractEventLoop):
            raise ConfigurationError(
                f"start(loop=...): loop must be an asyncio event loop, got {loop!r}"
            )
        if loop.is_closed():
            raise ConfigurationError("start(loop=...): that event loop is closed")
        return loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def on_loop_thread(loop: asyncio.AbstractEventLoop | None) -> bool:
    """Whether the calling thread is the one running ``loop`` (waiting there would deadlock)."""
    if loop is None:
        return False
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def is_wrong_loop(exc: BaseException) -> bool:
    """Whether ``exc`` says an async object was used on a loop it is not bound to."""
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    return any(sign in text for sign in _WRONG_LOOP_SIGNS)


class WrongLoopWarnings:
    """Warn once per check that its probe failed on the wrong event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def describe(self, check: str, kind: str, error: str) -> str:
        """The check's ``error`` text for this failure (and the one warning, if first)."""
        with self._lock:
            first = check not in self._warned
            self._warned.add(check)
        if first:
            logger.warning(
                "modelwatch.health.wrong_event_loop",
                check=check,
                kind=kind,
                error=error,
                message="an async probe ran on a loop its client is not bound to"
                + _WRONG_LOOP_HINT,
            )
        return (WRONG_LOOP_PREFIX + error)[:200]
