"""Who a model call is for: users, or a probe (a health check or a breaker's recovery probe).

Calls made inside :func:`probing` carry ``modelwatch.origin="probe"`` on their span and their
duration and token metrics, so availability SLOs can count users' calls only: a health check
hammering a model that is down is not an outage users saw. modelwatch's health registry and
the router's background probes run every probe inside it.

>>> from modelwatch.capture.origin import probing, in_probe
>>> with probing():
...     in_probe()
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_PROBE: ContextVar[bool] = ContextVar("modelwatch_probe", default=False)


def in_probe() -> bool:
    """Whether the current context is running a probe."""
    return _PROBE.get()


@contextmanager
def probing() -> Iterator[None]:
    """Mark every monitored call made inside the block as a probe's."""
    token = _PROBE.set(True)
    try:
        yield
    finally:
        _PROBE.reset(token)
