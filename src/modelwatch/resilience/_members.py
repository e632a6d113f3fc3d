"""Internal types shared by the router's policy and its drivers."""

from __future__ import annotations

import copy
from collections.abc import Generator
from typing import Any, Final

from modelwatch import semconv
from modelwatch.capture.call import Call, CallSpec
from modelwatch.lifecycle import model_spec
from modelwatch.resilience.backend import Backend
from modelwatch.resilience.breaker import Breaker, Permit
from modelwatch.resilience.deadline import WorkerPool
from modelwatch.resilience.hedge import LatencyWindow

__all__ = ["DONE", "HEDGE_DUE", "WAIT", "Member", "Outcome", "Plan", "Req"]

DONE: Final = object()  # a stream ended
#: driver -> plan: the hedge delay passed while attempts are still running
HEDGE_DUE: Final = object()
#: plan -> driver: start nothing new, wait for one of the running attempts
WAIT: Final = object()


class Member:
    """A backend with its breaker and precomputed telemetry (a :class:`Candidate`)."""

    __slots__ = (
        "_specs",
        "backend",
        "benched_until",
        "breaker",
        "first_spec",
        "index",
        "latencies",
        "pool",
        "rate_limits",
        "rate_limits_at",
        "spec",
        "warming",
        "what",
    )

    def __init__(
        self, index: int, backend: Backend, breaker: Breaker, router: str, tier: str | None = None
    ) -> None:
        self.index = index
        self.backend = backend
        self.breaker = breaker
        self.spec = model_spec(
            backend.model,
            backend.provider,
            operation=backend.operation,
            analysis=backend.analysis,
            server_address=backend.server_address,
            usage=backend.usage,
            router=router,
            tier=tier,
        )
        self.benched_until = 0.0
        self.rate_limits: dict[str, float] = {}
        self.rate_limits_at = 0.0  # router clock time of the last reading
        self.what = f"attempt on {backend.model!r}"
        self._specs: list[CallSpec] = []
        self.first_spec = self.spec_for(1)  # the common case, without the method call
        self.pool: WorkerPool | None = None
        #: recent successful durations, kept only when the router hedges (for the p95 delay)
        self.latencies: LatencyWindow | None = None
        self.warming = False  # a warm-up of this backend is under way

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
    """The plan asks its driver to run one attempt.

    ``hedge_s``: if the attempt has not answered after this many seconds, the driver tells the
    plan (it sends :data:`HEDGE_DUE`) and keeps the attempt running; ``None``: no hedge timer.
    ``hedge``: this attempt is itself a hedge (it runs alongside an earlier one).
    """

    __slots__ = (
        "call",
        "hedge",
        "hedge_s",
        "member",
        "number",
        "permit",
        "started",
        "timeout_s",
    )

    def __init__(
        self,
        member: Member,
        permit: Permit,
        number: int,
        timeout_s: float,
        *,
        hedge_s: float | None = None,
        hedge: bool = False,
    ) -> None:
        self.member = member
        self.permit = permit
        self.number = number
        self.timeout_s = timeout_s
        self.hedge_s = hedge_s
        self.hedge = hedge
        self.started = 0.0  # clock time the plan handed it over
        #: the attempt's call, once its driver started it (the route span may link to it)
        self.call: Call | None = None


# An attempt's outcome as the driver reports it: (succeeded, result or exception, seconds, req)
Outcome = tuple[bool, Any, float, Req]
# What a plan yields: an attempt to start, seconds to sleep, or WAIT; it is sent back an
# Outcome, HEDGE_DUE, or None (after a sleep).
Plan = Generator[Any, Any, Any]
