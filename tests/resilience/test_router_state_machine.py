"""A hypothesis state machine drives a three-backend router with an injected clock.

Backends switch between healthy, failing (unavailable), rate-limited and rejecting the
request (bad_request) at random; time jumps at random. After every call:

* no backend was called while its breaker was open and its open time had not ended;
* each call tried each backend at most once (same-backend retries are off here);
* the call's attempt spans are exactly its backend calls: its one span when the first attempt
  answered, else the route span's linked and child attempts, within its start and end;
* a successful call returned the answer of the last backend it called;
* a failed call raised the backend's own exception for a bad request, and otherwise a
  modelwatch error chained (``__cause__``) to the last backend error, or to a
  ``CircuitOpenError`` when no backend could be called at all.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelwatch._clock import ManualClock
from modelwatch.capture._telemetry import use_providers
from modelwatch.errors import AllBackendsFailedError, CircuitOpenError, ModelwatchError
from modelwatch.resilience.breaker import Breaker, Transition
from modelwatch.resilience.policy import BreakerPolicy, RetryPolicy
from modelwatch.resilience.router import Backend, Router

from ._fakes import HTTPError, classify

MODES = ["ok", "down", "rate_limited", "bad_request"]
NAMES = ["m0", "m1", "m2"]


class FakeBackend:
    def __init__(self, name: str, machine: RouterMachine) -> None:
        self.name = name
        self.mode = "ok"
        self.machine = machine

    def __call__(self, prompt: str) -> str:
        self.machine.on_backend_call(self.name)
        if self.mode == "down":
            raise self.machine.raised(ConnectionRefusedError(f"{self.name} down"))
        if self.mode == "rate_limited":
            raise self.machine.raised(HTTPError(429, retry_after_s=5.0))
        if self.mode == "bad_request":
            raise self.machine.raised(HTTPError(400))
        return f"{self.name}:{prompt}"


class RouterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.exporter = InMemorySpanExporter()
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(self.exporter))
        self._providers = use_providers(tp, MeterProvider())
        self._providers.__enter__()
        self.clock = ManualClock()
        self.backends = {n: FakeBackend(n, self) for n in NAMES}
        self.router = Router(
            "sm",
            [Backend(self.backends[n], model=n, provider="test") for n in NAMES],
            breaker=BreakerPolicy(jitter=0.1),
            retry=RetryPolicy(max_retries=0),
            classify=classify,
            clock=self.clock,
            isolate_sync=False,
        )
        self.windows: dict[str, list[tuple[float, float]]] = {n: [] for n in NAMES}
        for n in NAMES:
            self.router.breaker(n).add_listener(self._on_transition(n))
        self.calls_this_round: list[str] = []
        self.last_raised: BaseException | None = None

    def teardown(self) -> None:
        self.router.close()  # gives the name "sm" back for the next example
        self._providers.__exit__(None, None, None)

    def _on_transition(self, name: str) -> Any:
        def listener(_b: Breaker, t: Transition) -> None:
            if t.to_state == "open":
                assert t.retry_after_s is not None
                now = self.clock.monotonic()
                self.windows[name].append((now, now + t.retry_after_s))

        return listener

    def on_backend_call(self, name: str) -> None:
        now = self.clock.monotonic()
        for opened, until in self.windows[name]:
            assert not (opened <= now < until), f"{name} called while open"
        self.calls_this_round.append(name)

    def raised(self, exc: BaseException) -> BaseException:
        self.last_raised = exc
        return exc

    @rule(name=st.sampled_from(NAMES), mode=st.sampled_from(MODES))
    def set_mode(self, name: str, mode: str) -> None:
        self.backends[name].mode = mode

    @rule(seconds=st.sampled_from([0.5, 2.0, 6.0, 11.0, 25.0, 70.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def call(self) -> None:
        self.exporter.clear()
        self.calls_this_round = []
        self.last_raised = None
        result: Any = None
        error: BaseException | None = None
        try:
            result = self.router.call("q")
        except BaseException as exc:
            error = exc
        called = self.calls_this_round
        assert len(called) == len(set(called)), f"a backend was tried twice: {called}"
        spans = self.exporter.get_finished_spans()
        routes = [s for s in spans if s.name == "route sm"]
        if not routes:  # answered by its first attempt, nothing else: that span alone
            (only,) = spans
            assert error is None
            assert [only.name.split(" ", 1)[1]] == called
            assert (only.attributes or {})["modelwatch.attempt"] == 1
        else:  # attempts before the route span started are linked, the later ones children
            (route,) = routes
            linked = {link.context.span_id for link in route.links}
            attempts = [
                s
                for s in spans
                if s.context.span_id in linked
                or (s.parent is not None and s.parent.span_id == route.context.span_id)
            ]
            assert [s.name.split(" ", 1)[1] for s in attempts] == called
            assert all(route.start_time <= s.start_time for s in attempts)  # type: ignore[operator]
            assert all(route.end_time >= s.end_time for s in attempts)  # type: ignore[operator]
        if error is None:
            assert called
            assert result == f"{called[-1]}:q"
            return
        if isinstance(error, HTTPError) and error.status == 400:
            assert error is self.last_raised  # surfaced as is
            return
        assert isinstance(error, ModelwatchError), repr(error)
        assert isinstance(error, AllBackendsFailedError)
        if called:
            assert error.__cause__ is self.last_raised
        else:
            assert isinstance(error.__cause__, CircuitOpenError)


RouterMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRouterMachine = RouterMachine.TestCase
