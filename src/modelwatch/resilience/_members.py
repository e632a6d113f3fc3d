"""Internal types shared by the router's policy and its drivers."""

from __future__ import annotations

import copy
from collections.abc import Generator
from typing import Any, Final

from modelwatch import semconv
from modelwatch.capture.call import CallSpec
from modelwatch.capture.monitored import monitored
from modelwatch.resilience.backend import Backend
from modelwatch.resilience.breaker import Breaker, Permit
from modelwatch.resilience.deadline import WorkerPool

__all__ = ["DONE", "Member", "Outcome", "Plan", "Req"]

DONE: Final = object()  # a stream ended


class Member:
    """A backend with its breaker and precomputed telemetry (a :class:`Candidate`)."""

    __slots__ = (
        "_specs",
        "backend",
        "benched_until",
        "breaker",
        "index",
        "pool",
        "rate_limits",
        "rate_limits_at",
        "spec",
        "what",
    )

    def __init__(self, index: int, backend: Backend, breaker: Breaker, router: str) -> None:
        self.index = index
        self.backend = backend
        self.breaker = breaker
        self.spec = monitored(
            model=backend.model,
            provider=backend.provider,
            operation=backend.operation,
            analysis=backend.analysis,
            server_address=backend.server_address,
            usage=backend.usage,
            router=router,
        )._spec
        self.benched_until = 0.0
        self.rate_limits: dict[str, float] = {}
        self.rate_limits_at = 0.0  # monotonic time of the last reading
        self.what = f"attempt on {backend.model!r}"
        self._specs: list[CallSpec] = []
        self.pool: WorkerPool | None = None

    def spec_for(self, attempt: int) -> CallSpec:
        """The attempt span's spec with ``modelwatch.attempt`` already among its start
        attributes (one cached spec per attempt number: no ``set_attribute`` per call)."""
        specs = self._specs
        while len(specs) < attempt:
            spec = copy.copy(self.spec)
            spec.span_attributes = {
                **self.spec.span_attributes,
                semconv.MODELWATCH_ATTEMPT: len(specs) + 1,
            }
            specs.append(spec)
        return specs[attempt - 1]

    @property
    def latency_s(self) -> float | None:
        return self.breaker.latency_ewma_s


class Req:
    """The plan asks its driver to run one attempt."""

    __slots__ = ("member", "number", "permit", "timeout_s")

    def __init__(self, member: Member, permit: Permit, number: int, timeout_s: float) -> None:
        self.member = member
        self.permit = permit
        self.number = number
        self.timeout_s = timeout_s


# An attempt's outcome as the driver reports it: (succeeded, result or exception, seconds)
Outcome = tuple[bool, Any, float]
Plan = Generator["Req | float", "Outcome | None", Any]
