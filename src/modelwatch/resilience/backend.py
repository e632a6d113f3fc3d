"""What a router routes to: :class:`Backend` (a callable and its model) and
:class:`BackendStatus` (how the router sees it now)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelwatch.resilience.canary import Canary

from modelwatch import semconv
from modelwatch.errors import ConfigurationError
from modelwatch.resilience._validate import check_callable, check_timeout

__all__ = ["Backend", "BackendStatus"]


class Backend:
    """One model behind a router: a callable plus what it is.

    ``fn`` is called with the router call's arguments: a function, an ``async def``, or
    (for :meth:`Router.stream`/:meth:`Router.astream`) anything returning an iterable or
    async iterable of chunks. ``timeout_s`` overrides the router's ``attempt_timeout_s``.
    ``probe`` (no arguments, sync or async) checks recovery in the background while the
    backend's breaker is open. ``weight`` is used by :class:`~modelwatch.resilience.Weighted`.
    ``name`` defaults to ``model`` and must be unique in a router. ``version`` names the
    model version it serves; ``canary`` makes it a candidate version tried on a share of
    the traffic against a stable one, rolled back automatically on a regression
    (:class:`~modelwatch.Canary`). ``warmup`` (no arguments, sync or async; default: ``probe``)
    is what :meth:`Router.warm_up` calls until the backend answers in time.

    >>> Backend(lambda text: text[:10], model="facebook/bart-large-cnn", provider="huggingface")
    Backend(model='facebook/bart-large-cnn', provider='huggingface')
    """

    __slots__ = (
        "analysis",
        "canary",
        "fn",
        "is_async",
        "model",
        "name",
        "operation",
        "probe",
        "provider",
        "server_address",
        "timeout_s",
        "usage",
        "version",
        "warmup",
        "weight",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        model: str,
        provider: str,
        operation: str = semconv.OPERATION_CHAT,
        analysis: str | None = None,
        server_address: str | None = None,
        timeout_s: float | None = None,
        probe: Callable[[], Any] | None = None,
        weight: float = 1.0,
        name: str | None = None,
        usage: Callable[[Any], Any] | None = None,
        version: str | None = None,
        canary: Canary | None = None,
        warmup: Callable[[], Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"Backend fn must be callable, got {fn!r}")
        for key, value in (("model", model), ("provider", provider), ("operation", operation)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(f"Backend {key} must be a non-empty str, got {value!r}")
        owner = f"Backend({model!r})"
        timeout_s = check_timeout(owner, "timeout_s", timeout_s)
        check_callable(owner, "probe", probe)
        check_callable(owner, "usage", usage)
        check_callable(owner, "warmup", warmup)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight <= 0
        ):
            raise ConfigurationError(f"{owner} weight must be a finite number > 0, got {weight!r}")
        self.fn = fn
        self.model = model
        self.provider = provider
        self.operation = operation
        self.analysis = analysis
        self.server_address = server_address
        self.timeout_s = timeout_s
        self.probe = probe
        self.weight = weight
        self.name = name if name is not None else model
        self.usage = usage
        self.version = version
        self.canary = canary
        self.warmup = warmup
        self.is_async = _is_async(fn)

    def __repr__(self) -> str:
        return f"Backend(model={self.model!r}, provider={self.provider!r})"


@dataclass(frozen=True)
class BackendStatus:
    """A backend as its router sees it now, answered from memory.

    ``state`` is the breaker's (``"closed"``, ``"half_open"``, ``"open"``);
    ``retry_after_s`` is when it takes calls again (open breaker or rate-limit bench),
    ``last_error`` the kind of its last failure and ``last_error_at`` when (epoch seconds),
    ``error_rate`` the failure share in the breaker window, ``latency_s`` the moving
    average of successful calls, ``rate_limit_remaining`` the last ``remaining/limit`` seen
    per resource, ``warming`` whether a warm-up of it is under way (health shows "warming"
    rather than "down").
    """

    name: str
    model: str
    provider: str
    state: str
    retry_after_s: float | None
    last_error: str | None
    last_error_at: float | None
    error_rate: float | None
    latency_s: float | None
    rate_limit_remaining: dict[str, float] = field(default_factory=dict)
    warming: bool = False


def _is_async(fn: Callable[..., Any]) -> bool:
    """``async def`` functions, async generators, and objects whose ``__call__`` is one."""
    for candidate in (fn, getattr(fn, "__call__", None)):  # noqa: B004 - callables, not just functions
        if inspect.iscoroutinefunction(candidate) or inspect.isasyncgenfunction(candidate):
            return True
    return False
