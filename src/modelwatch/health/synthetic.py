"""Synthetic transactions: probes that run a real end-to-end call."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from modelwatch.health._workers import Probe, is_async_probe

__all__ = ["synthetic"]


def synthetic(
    fn: Callable[..., Any],
    *args: Any,
    expect: Callable[[Any], bool] | None = None,
    **kwargs: Any,
) -> Probe:
    """A probe that runs a real, end-to-end transaction: ``fn(*args, **kwargs)``.

    Use it for an analysis check that sends a tiny request through the same router the
    service uses, so the check's ``latency_s`` is the latency users see::

        health.add("code_review",
                   probe=synthetic(router.call, "def f(): return 1", expect=bool),
                   kind="analysis", timeout_s=20.0, interval_s=120.0)

    The probe fails if ``fn`` raises or if ``expect(result)`` is falsy. ``fn`` may be
    ``async def``; the probe is then async too.
    """

    def judge(result: Any) -> bool:
        return True if expect is None else bool(expect(result))

    if is_async_probe(fn):

        async def async_probe() -> bool:
            return judge(await fn(*args, **kwargs))

        functools.update_wrapper(async_probe, fn, updated=())
        return async_probe

    def probe() -> bool:
        return judge(fn(*args, **kwargs))

    functools.update_wrapper(probe, fn, updated=())
    return probe
