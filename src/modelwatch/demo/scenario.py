"""The demo's scripted incident, with every phase proportional to the run's duration.

Timeline (fractions of ``--duration``)::

    0.00  warm-up            every model healthy
    0.20  hang               code_review's primary (FLAN-T5 large) stops answering: its
                             requests hang (its router hedges them on the backup)
    0.30  incident           FLAN-T5 large answers again, with errors: 429 with
                             Retry-After, 503 "model is loading", and hung requests
    0.40  + slow model       requirement_extraction's primary (BART) answers slowly
    0.60  recovery           FLAN-T5 large heals; the breaker's probes find out
    0.80  calm               BART is fast again; everything settles

The fault mix comes from ``--seed``: the same seed gives the same faults in the same order,
the same request mix and the same inputs. Thread timing still moves individual requests by a
few milliseconds, so counts differ slightly between runs; the story does not.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from modelwatch.demo._background import Background
from modelwatch.demo.record import Recorder
from modelwatch.testing.fake_server import FakeModelServer, FaultName

__all__ = ["FaultStep", "Phase", "Scenario", "ScenarioRunner", "Step"]

INCIDENT_AT: Final = 0.20
#: the hang ends and the errors begin
ERRORS_AT: Final = 0.30
SLOW_AT: Final = 0.40
RECOVER_AT: Final = 0.60
CALM_AT: Final = 0.80


@dataclass(frozen=True)
class Phase:
    """A named stretch of the scenario, ``start`` to ``end`` seconds."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class FaultStep:
    """One entry of the failing model's fault queue: ``fault`` for the next ``times`` requests
    (``None``: until healed)."""

    fault: FaultName
    times: int | None
    retry_after: float = 1.0

    def describe(self) -> str:
        """``"429 x2 (Retry-After 0.9 s)"``, ``"503 loading x3"``, ``"hang x1"``..."""
        count = "until healed" if self.times is None else f"x{self.times}"
        if self.fault == "rate_limit":
            return f"429 {count} (Retry-After {self.retry_after:.1f} s)"
        if self.fault == "loading":
            return f"503 loading {count}"
        return f"{self.fault} {count}"


@dataclass(frozen=True)
class Step:
    """Something the scenario does at ``at`` seconds: change the fake server, say so."""

    at: float
    text: str
    action: Callable[[FakeModelServer], None] = field(compare=False)


class Scenario:
    """The phases and scripted steps of one demo run.

    Args:
        duration: length of the run in seconds.
        seed: seeds the fault mix.
        failing: the model that fails during the incident.
        slow: the model that gets slow.
        slow_latency_s: how much slower it gets.
        canary: ``(analysis, endpoint)`` of a candidate version that answers slowly from the
            start (and is rolled back).
    """

    def __init__(
        self,
        duration: float,
        seed: int,
        *,
        failing: str,
        slow: str,
        slow_latency_s: float,
        canary: tuple[str, str] | None = None,
    ) -> None:
        self.duration = duration
        self.seed = seed
        self.failing = failing
        self.slow = slow
        self.incident_at = duration * INCIDENT_AT
        #: the failing model hangs from ``incident_at`` to ``errors_at``, then fails fast
        self.errors_at = duration * ERRORS_AT
        self.slow_at = duration * SLOW_AT
        self.recover_at = duration * RECOVER_AT
        self.calm_at = duration * CALM_AT
        self.faults = self._fault_plan(random.Random(seed))
        short = failing.rsplit("/", 1)[-1]
        slow_short = slow.rsplit("/", 1)[-1]
        self.phases = [
            Phase("warm-up", 0.0, self.incident_at),
            Phase(f"incident: {short} hangs", self.incident_at, self.errors_at),
            Phase(f"incident: {short} failing", self.errors_at, self.slow_at),
            Phase(f"incident: {short} failing, {slow_short} slow", self.slow_at, self.recover_at),
            Phase(f"recovery: {short} healed, {slow_short} slow", self.recover_at, self.calm_at),
            Phase("calm", self.calm_at, duration),
        ]
        self.steps = [
            Step(
                self.incident_at,
                f"{failing} stops answering: every request hangs (held past any timeout)",
                self._start_hang,
            ),
            Step(
                self.errors_at,
                f"{failing} answers again, with errors: "
                + ", then ".join(f.describe() for f in self.faults),
                self._start_errors,
            ),
            Step(
                self.slow_at,
                f"{slow} gets slow (+{slow_latency_s:.2f} s per call)",
                lambda server: server.set_latency(slow, slow_latency_s),
            ),
            Step(self.recover_at, f"{failing} recovers", lambda server: server.heal(failing)),
            Step(self.calm_at, f"{slow} is fast again", lambda server: server.set_latency(slow, 0)),
        ]
        if canary is not None:  # a bad build on trial from the start
            analysis, endpoint = canary
            self.steps.insert(
                0,
                Step(
                    0.0,
                    f"{analysis}'s candidate version ({endpoint}, on trial for 10 % of its "
                    f"calls) answers slowly: +{slow_latency_s:.2f} s per call",
                    lambda server: server.set_latency(endpoint, slow_latency_s),
                ),
            )

    def _fault_plan(self, rng: random.Random) -> list[FaultStep]:
        # Rate limiting first (the provider sheds load), then a seeded mix of "loading" and
        # hangs (at least one hang), then "loading" until the model heals: every trial call
        # and probe during the outage fails, so the breaker stays open until recovery.
        retry_after = round(max(0.5, min(2.0, self.duration * 0.015)), 1)
        plan = [FaultStep("rate_limit", rng.randint(1, 2), retry_after)]
        middle = [FaultStep("hang", 1), FaultStep("loading", rng.randint(1, 3))]
        for _ in range(2):
            if rng.random() < 0.6:
                middle.append(FaultStep("loading", rng.randint(1, 3)))
            else:
                middle.append(FaultStep("hang", 1))
        rng.shuffle(middle)
        for step in middle:
            last = plan[-1]
            if last.fault == step.fault and last.times is not None and step.times is not None:
                plan[-1] = FaultStep(last.fault, last.times + step.times, last.retry_after)
            else:
                plan.append(step)
        if plan[-1].fault == "loading":
            plan.pop()
        plan.append(FaultStep("loading", None))
        return plan

    def _start_hang(self, server: FakeModelServer) -> None:
        # held for twice the run: no request of the hang gets an answer (the server's stop
        # ends them), and none takes one of the faults queued when the errors begin
        server.set_latency(self.failing, self.duration * 2)

    def _start_errors(self, server: FakeModelServer) -> None:
        for step in self.faults:
            server.fail(
                self.failing,
                step.fault,
                times=step.times,
                retry_after=step.retry_after,
                estimated_time=max(1.0, self.duration * 0.4),
            )
        server.set_latency(self.failing, 0)  # the faults first: no request finds it healthy

    def phase_at(self, t: float) -> Phase:
        """The phase running at ``t`` seconds (the last one after the end)."""
        for phase in self.phases:
            if t < phase.end:
                return phase
        return self.phases[-1]


class ScenarioRunner(Background):
    """Applies a :class:`Scenario`'s steps to the fake server on time, on its own thread
    (``start()``; ``stop()`` skips the steps not yet due and waits for the thread)."""

    def __init__(self, scenario: Scenario, server: FakeModelServer, recorder: Recorder) -> None:
        super().__init__("modelwatch-demo-scenario", self._run)
        self._scenario = scenario
        self._server = server
        self._recorder = recorder
        #: seconds (demo time) at which each step actually ran, by step index
        self.ran_at: dict[int, float] = {}

    def _run(self, stop: threading.Event) -> None:
        for index, step in enumerate(self._scenario.steps):
            if stop.wait(max(0.0, step.at - self._recorder.now())):
                return
            step.action(self._server)
            now = self._recorder.now()
            self.ran_at[index] = now
            self._recorder.event("scenario", step.text, at=now)
