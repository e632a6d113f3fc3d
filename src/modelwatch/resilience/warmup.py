"""Warm-up: call each backend until it answers within its latency target, before users do.

A cold Hugging Face endpoint answers 503 "model is loading" with an ``estimated_time`` for a
while; :meth:`Router.warm_up <modelwatch.Router.warm_up>` calls each backend's ``warmup`` (or
its ``probe``) until it answers within ``target_s``, waiting what a 503 asks for (its
``estimated_time`` or ``Retry-After``, capped by what is left of ``timeout_s``), else
``backoff_s``. While a backend warms, :class:`~modelwatch.BackendStatus` says ``warming=True``
so health reports show "warming" rather than "down". ``Router(warm_every_s=...)`` repeats it
in the background (e.g. before expected traffic, or to keep a scale-to-zero endpoint warm).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelwatch._clock import Clock
from modelwatch._safety import report_internal_error
from modelwatch.resilience._kinds import retry_after_s
from modelwatch.resilience._members import Member

__all__ = ["WarmupResult", "Warmer", "warm_up"]


@dataclass(frozen=True)
class WarmupResult:
    """How one backend's warm-up went: ``ok`` when it answered within ``target_s``;
    ``attempts`` calls made over ``elapsed_s``; ``last_error`` the kind of the last failure
    (or ``"slow"`` for an answer over the target); ``skipped`` when it has no warm-up call."""

    name: str
    model: str
    ok: bool
    attempts: int
    elapsed_s: float
    last_error: str | None = None
    skipped: bool = False


def _call(fn: Callable[[], Any]) -> Any:
    result = fn()
    if inspect.isawaitable(result):
        return asyncio.run(_awaited(result))
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def warm_one(
    m: Member,
    *,
    clock: Clock,
    kind_of: Callable[[BaseException], str],
    timeout_s: float,
    target_s: float,
    backoff_s: float,
) -> WarmupResult:
    """Warm one backend (see the module docstring)."""
    b = m.backend
    fn = b.warmup if b.warmup is not None else b.probe
    if fn is None:
        return WarmupResult(b.name, b.model, ok=True, attempts=0, elapsed_s=0.0, skipped=True)
    started = clock.monotonic()
    attempts = 0
    last: str | None = None
    m.warming = True
    try:
        while True:
            attempts += 1
            t0 = time.perf_counter()
            wait = backoff_s
            try:
                _call(fn)
            except Exception as exc:
                last = kind_of(exc)
                asked = retry_after_s(exc)  # a 503 "loading" says how long: its estimated_time
                if asked is not None:
                    wait = asked
            else:
                if time.perf_counter() - t0 <= target_s:
                    return WarmupResult(
                        b.name, b.model, True, attempts, clock.monotonic() - started, None
                    )
                last = "slow"
                wait = 0.0  # answering, just slowly: try again at once
            left = timeout_s - (clock.monotonic() - started)
            if left <= 0:
                return WarmupResult(b.name, b.model, False, attempts, timeout_s, last)
            clock.sleep(min(wait, left))
    finally:
        m.warming = False


def warm_up(
    members: Sequence[Member],
    *,
    clock: Clock,
    kind_of: Callable[[BaseException], str],
    timeout_s: float,
    target_s: float,
    backoff_s: float = 1.0,
) -> list[WarmupResult]:
    """Warm every backend at once (one thread each), each within ``timeout_s``."""
    results: list[WarmupResult | None] = [None] * len(members)

    def run(i: int, m: Member) -> None:
        try:
            results[i] = warm_one(
                m,
                clock=clock,
                kind_of=kind_of,
                timeout_s=timeout_s,
                target_s=target_s,
                backoff_s=backoff_s,
            )
        except Exception as exc:  # a bug of ours: reported, never raised into the caller
            report_internal_error("router.warm_up", exc)
            results[i] = WarmupResult(m.backend.name, m.backend.model, False, 0, 0.0, "_OTHER")

    if len(members) == 1:
        run(0, members[0])
    else:
        threads = [
            threading.Thread(target=run, args=(i, m), daemon=True, name="modelwatch-warmup")
            for i, m in enumerate(members)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return [r for r in results if r is not None]


class Warmer:
    """``Router(warm_every_s=...)``: warm the router's backends every ``every_s`` seconds on a
    daemon thread, until :meth:`stop`."""

    def __init__(self, every_s: float, warm: Callable[[], object]) -> None:
        self._every_s = every_s
        self._warm = warm
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="modelwatch-warm")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._warm()
            except Exception as exc:
                report_internal_error("router.warm_every", exc)
            self._stop.wait(self._every_s)

    def stop(self) -> None:
        """Stop warming (the current round finishes on its own)."""
        self._stop.set()
