"""Shared-state I/O off the call path: one background thread, coalesced jobs, a bounded queue.

Whatever modelwatch keeps in Redis (breaker state, budget spend) is written and re-read by
this one daemon thread, never by a user's call: a call only records what happened locally
and asks for the owner to be *serviced* (:meth:`WriteBehind.submit`, a dict insert under a
lock). Jobs are keyed by their owner and coalesced: while an owner is queued, asking again
adds nothing, and the job reads the owner's latest state when it runs, so a burst of
transitions or charges costs one round trip. The queue holds at most ``limit`` owners; an
owner that does not fit is serviced on its next request (its state is kept, not dropped),
and the overflow is reported once.

A slow or stopped Redis therefore stalls only this thread (for the client's socket timeout
per command); calls go on deciding from local state.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Final

import structlog

from modelwatch._safety import report_internal_error

__all__ = ["WRITER", "WriteBehind", "check_timeouts"]

#: Owners queued at once before new ones wait for their next request.
QUEUE_LIMIT: Final = 10_000


class WriteBehind:
    """The background thread servicing shared-state owners, started on first use."""

    def __init__(self, name: str = "modelwatch-shared-state", limit: int = QUEUE_LIMIT) -> None:
        self.name = name
        self.limit = limit
        self._jobs: dict[Hashable, Callable[[], None]] = {}
        self._cond = threading.Condition()
        self._busy = 0
        self._thread: threading.Thread | None = None
        self.overflowed = 0
        #: jobs run on the background thread (tests assert on it)
        self.runs = 0

    def submit(self, owner: Hashable, job: Callable[[], None]) -> bool:
        """Run ``job()`` on the background thread soon, unless ``owner`` is queued already.
        Never blocks on I/O; ``False`` if the queue is full (ask again later)."""
        with self._cond:
            if owner in self._jobs:
                return True
            if len(self._jobs) >= self.limit:
                self.overflowed += 1
                if self.overflowed == 1:
                    report_internal_error(
                        "writebehind.full", OverflowError(f"{self.name}: {self.limit} queued")
                    )
                return False
            self._jobs[owner] = job
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return True

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Wait until nothing is queued or running (tests, shutdown); ``False`` on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._jobs or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    self._cond.wait()
                owner = next(iter(self._jobs))
                job = self._jobs.pop(owner)
                self._busy += 1
            try:
                job()
            except Exception as exc:
                report_internal_error("writebehind.job", exc)
            finally:
                with self._cond:
                    self._busy -= 1
                    self.runs += 1
                    self._cond.notify_all()
            del job, owner

    def _after_fork(self) -> None:
        """The child has no background thread and may have inherited a held lock."""
        self._cond = threading.Condition()
        self._jobs = {}
        self._busy = 0
        self._thread = None


def check_timeouts(client: Any, what: str) -> None:
    """Warn once per client if a redis client has no socket timeout: calls are never affected,
    but a paused Redis would then hold the background thread (and every other shared state
    behind it) until Redis answers again."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if not isinstance(kwargs, dict) or kwargs.get("socket_timeout") is not None:
        return
    if id(client) in _warned:
        return
    _warned.add(id(client))
    structlog.get_logger("modelwatch").warning(
        "modelwatch.redis.no_timeout",
        where=what,
        message=(
            f"the redis client given to {what} has no socket_timeout: give it one "
            "(e.g. socket_timeout=0.5, socket_connect_timeout=0.5) so a stalled Redis cannot "
            "hold modelwatch's shared-state thread"
        ),
    )


_warned: set[int] = set()

WRITER: Final = WriteBehind()
os.register_at_fork(after_in_child=WRITER._after_fork)
