"""The demo's AI engine: ``examples/engine.py`` itself, with demo timings and a recorder.

The engine (three analysis types, each a :class:`modelwatch.Router` over the real
``huggingface_hub`` and ``openai`` clients, and its :class:`modelwatch.Health`) is the one in
``examples/engine.py``, the file users copy; the demo only passes it shorter timeouts and
breaker settings (:class:`Timing`) and a ``wrap`` hook that writes every model call into the
demo's own record (:mod:`modelwatch.demo.record`), independent of modelwatch's telemetry, for
the live view and the summary. Calls made inside :func:`modelwatch.capture.origin.probing`
(health checks, breaker probes) are recorded as probes, as the telemetry labels them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import random
import sys
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Protocol

from modelwatch._classify import classify
from modelwatch.capture.budget import Budget
from modelwatch.capture.cost import cost_of
from modelwatch.capture.drift import Drift
from modelwatch.capture.origin import in_probe
from modelwatch.demo.record import (
    AttemptRecord,
    Origin,
    Recorder,
    RequestRecord,
    TransitionRecord,
)
from modelwatch.demo.spans import HedgeLog
from modelwatch.demo.timing import Timing
from modelwatch.errors import AllBackendsFailedError, ConfigurationError
from modelwatch.health import Health
from modelwatch.resilience import (
    Breaker,
    Router,
    Transition,
)
from modelwatch.testing.fake_server import FakeModelServer

__all__ = [
    "ANALYSES",
    "BUDGETED_MODEL",
    "CANARY_ANALYSIS",
    "CANARY_MODEL",
    "FAILING_MODEL",
    "HEDGED_ANALYSIS",
    "SLOW_MODEL",
    "AnalysisSpec",
    "Engine",
    "Serving",
    "ModelSpec",
    "Timing",
    "TrafficGenerator",
    "example_engine",
]

#: where a source checkout keeps the engine; wheels ship it as ``modelwatch.demo._example_engine``
_EXAMPLE: Final = Path(__file__).resolve().parents[3] / "examples" / "engine.py"


@functools.cache
def example_engine() -> ModuleType:
    """``examples/engine.py`` as a module: the engine the demo runs.

    Raises:
        ConfigurationError: neither an installed copy nor the source checkout's file exists.
    """
    try:
        return importlib.import_module("modelwatch.demo._example_engine")
    except ModuleNotFoundError:
        pass
    spec = importlib.util.spec_from_file_location("modelwatch_example_engine", _EXAMPLE)
    if spec is None or spec.loader is None or not _EXAMPLE.is_file():
        raise ConfigurationError(f"the demo runs examples/engine.py; not found at {_EXAMPLE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class ModelSpec:
    """A model the engine calls (from ``examples/engine.py``'s ``ANALYSES``)."""

    model: str
    provider: str
    operation: str

    @property
    def short(self) -> str:
        """The model name without its organisation."""
        return self.model.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class AnalysisSpec:
    """An analysis type: its models (primary first, from the engine) and the demo's inputs."""

    name: str
    primary: ModelSpec
    backup: ModelSpec
    inputs: tuple[str, ...]
    #: share of the traffic
    weight: float = 1.0

    @property
    def models(self) -> tuple[ModelSpec, ModelSpec]:
        """Primary, then backup."""
        return (self.primary, self.backup)


#: what the demo's users send to each analysis, and how often (the engine decides the rest)
_TRAFFIC: Final[dict[str, tuple[float, tuple[str, ...]]]] = {
    "code_review": (
        1.2,
        (
            "def add(a, b): return a - b",
            "for i in range(len(items)): print(items[i])",
            "password = 'hunter2'  # TODO move to config",
            "except Exception: pass",
            "query = f\"SELECT * FROM users WHERE name = '{name}'\"",
        ),
    ),
    "requirement_extraction": (
        1.0,
        (
            "The system shall let users reset their password by e-mail. Links expire in an hour.",
            "Reports must export to CSV and PDF within five seconds. Exports are audited.",
            "The API must answer 99.9 percent of requests within 300 ms. Errors are logged.",
            "Administrators can suspend accounts. Suspended users cannot log in or call the API.",
        ),
    ),
    "tech_recommendation": (
        0.8,
        (
            "a message queue for 10k events per second with at-least-once delivery",
            "a cache in front of a slow inventory service",
            "full-text search over two million product descriptions",
            "scheduling nightly batch jobs across three data centres",
        ),
    ),
}


def _analyses() -> tuple[AnalysisSpec, ...]:
    table: dict[str, tuple[tuple[str, str, str], ...]] = example_engine().ANALYSES
    specs = []
    for name, (primary, backup) in table.items():
        weight, inputs = _TRAFFIC.get(name, (1.0, ("ping",)))
        specs.append(AnalysisSpec(name, ModelSpec(*primary), ModelSpec(*backup), inputs, weight))
    return tuple(specs)


ANALYSES: Final = _analyses()
#: the scenario's failing model: the first analysis' primary
FAILING_MODEL: Final = ANALYSES[0].primary.model
#: the scenario's slow model: the second analysis' primary
SLOW_MODEL: Final = ANALYSES[1].primary.model
#: the analysis whose primary has a candidate version on trial (examples/engine.py's canaries)
CANARY_ANALYSIS: Final = ANALYSES[2].name
#: where that candidate is served (``{model}-v2``): the scenario makes it answer slowly
CANARY_MODEL: Final = f"{ANALYSES[2].primary.model}-v2"
_CANDIDATE_OF: Final = {CANARY_MODEL: ANALYSES[2].primary.model}
#: the analysis whose router hedges (examples/engine.py's HEDGES): the one whose primary hangs
HEDGED_ANALYSIS: Final = next(iter(example_engine().HEDGES))
#: the model with a cost budget (examples/engine.py's BUDGETS): spent 0.6 into the run
BUDGETED_MODEL: Final = next(iter(example_engine().BUDGETS))


class Serving(Protocol):
    """What the traffic generator and the views need of the engine: the in-process
    :class:`Engine`, or :class:`~modelwatch.demo.workers.Workers` (``--workers N``)."""

    server: Any
    recorder: Recorder
    analyses: dict[str, AnalysisSpec]

    def analyze_for_user(self, analysis: str, text: str) -> RequestRecord:
        """One user request."""

    def circuit_states(self) -> dict[tuple[str, str], str]:
        """``(analysis, model) -> state``."""


class Engine:
    """``examples/engine.py``'s routers and health, with demo timings, every call recorded.

    ``analyze_for_user(name, text)`` is a user's request; every backend call is written to
    ``recorder`` (origin ``"probe"`` inside health checks and breaker probes).
    """

    def __init__(
        self,
        server: FakeModelServer,
        recorder: Recorder,
        timing: Timing,
        *,
        seed: int,
        processes: int = 1,
        budget_suffix: str = "",
    ):
        """``processes``: how many engines share the traffic (``--workers``): each gets that
        share of the budget, named with ``budget_suffix``, as each process counts its own."""
        example = example_engine()
        self.server = server
        self.recorder = recorder
        self.timing = timing
        self.analyses = {a.name: a for a in ANALYSES}
        self._prompts: dict[str, str] = example.PROMPTS
        self._transitions_lock = threading.Lock()
        self._failed_trials: dict[str, int] = {}
        self._last_reopen_log: dict[str, float] = {}
        self.routers: dict[str, Router] = example.build_routers(
            server.url,
            server.openai_base_url,
            breaker=timing.breaker_policy(),
            retry=timing.retry_policy(),
            timeout_s=timing.call_timeout_s,
            attempt_timeout_s=timing.attempt_timeout_s,
            client_timeout_s=timing.client_timeout_s,
            wrap=self._recorded,
            canaries={CANARY_ANALYSIS: timing.canary()},
            hedges={name: timing.hedge() for name in example.HEDGES},
        )
        self._budget_limits = {
            model: timing.budget_usd(price, processes)
            for model in example.BUDGETS
            if (price := cost_of(model, None, None))
        }
        self._budget_suffix = budget_suffix
        #: opened with the first user call: the health checks run before the traffic starts
        #: (while Prometheus finds its targets), and the budget is for the run
        self.budgets: list[Budget] | None = None
        self._budgets_lock = threading.Lock()
        for name, router in self.routers.items():
            for spec in self.analyses[name].models:
                router.breaker(spec.model).add_listener(self._on_transition)
        self._hedges = HedgeLog(recorder, every_s=timing.duration / 30)
        # the slow model's latency, fed by its monitored calls: drifts when the scenario
        # slows it down, and modelwatch.drift.score carries it to ModelwatchDriftDetected
        self.drift = Drift(
            "latency of the slow model",
            features={"latency_s": "numeric"},
            model=SLOW_MODEL,
            window=timing.drift_window,
        )
        interval = timing.health_interval_s
        self.health: Health = example.build_health(
            self.routers,
            health=Health(rng=random.Random(seed)),
            model_interval_s=interval,
            analysis_interval_s=interval,
            model_timeout_s=timing.attempt_timeout_s,
            timeout_s=timing.call_timeout_s,
        )

    def close(self) -> None:
        """Release the routers' worker threads and background probes."""
        for router in self.routers.values():
            router.close()
        with self._budgets_lock:
            for budget in self.budgets or ():
                budget.close()
            self.budgets = []  # none opens after
        self.drift.close()
        self._hedges.close()

    def circuit_states(self) -> dict[tuple[str, str], str]:
        """``(analysis, model) -> "closed" | "half_open" | "open"``, from the routers."""
        states: dict[tuple[str, str], str] = {}
        for name, router in self.routers.items():
            for status in router.status():  # the primary before its candidate version
                states.setdefault((name, status.model), status.state)
        return states

    # ------------------------------------------------------------------ calls
    def analyze_for_user(self, analysis: str, text: str) -> RequestRecord:
        """Run one analysis as a user request, as the engine's HTTP route does; record it."""
        served: list[str] = []
        start = self.recorder.now()
        primary = self.analyses[analysis].primary.model
        prompt = self._prompts[analysis].format(text)
        with serving(served):
            try:
                self.routers[analysis].call(prompt)
            except Exception as exc:
                kind = _request_error_kind(exc)
                record = RequestRecord(start, self.recorder.now(), analysis, None, kind, primary)
            else:
                who = served[-1] if served else None
                record = RequestRecord(start, self.recorder.now(), analysis, who, None, primary)
        self.recorder.request(record)
        return record

    def _recorded(
        self, analysis: str, model: str, fn: Callable[[str], str]
    ) -> Callable[[str], str]:
        """``examples/engine.py``'s ``wrap`` hook: record each call of ``fn``."""
        recorder = self.recorder

        def call(prompt: str) -> str:
            token = recorder.attempt_started(model)
            start = recorder.now()
            origin: Origin = "probe" if in_probe() else "user"
            if self.budgets is None and origin == "user":
                self._open_budgets()
            try:
                text = fn(prompt)
            except BaseException as exc:
                kind = classify(exc)
                recorder.attempt(
                    token, AttemptRecord(start, recorder.now(), analysis, model, origin, kind)
                )
                raise
            recorder.attempt(
                token, AttemptRecord(start, recorder.now(), analysis, model, origin, None)
            )
            holder = _SERVED.get()
            if holder is not None:  # a candidate version answers for its model
                holder.append(_CANDIDATE_OF.get(model, model))
            return text

        call.__name__ = call.__qualname__ = getattr(fn, "__name__", "call")
        return call

    def _open_budgets(self) -> None:
        """Open the cost budgets (``examples/engine.py``'s ``build_budgets``), once."""
        example = example_engine()
        with self._budgets_lock:
            if self.budgets is None:
                self.budgets = example.build_budgets(
                    self._budget_limits, suffix=self._budget_suffix
                )

    def _on_transition(self, breaker: Breaker, event: Transition) -> None:
        """Record every breaker transition; log the telling ones as events.

        While a model is down, its breaker goes open -> half-open -> open on every failed
        probe; those are counted and logged at most every tenth of the run, not one by one.
        """
        model = breaker.model or breaker.name
        analysis = breaker.router or ""
        now = self.recorder.now()
        self.recorder.transition(
            TransitionRecord(now, analysis, model, event.from_state, event.to_state, event.reason)
        )
        with self._transitions_lock:
            if event.to_state == "half_open" and event.from_state == "open":
                self._failed_trials.setdefault(model, 0)
                return  # logged with its outcome
            if event.from_state == "half_open" and event.to_state == "open":
                self._failed_trials[model] = self._failed_trials.get(model, 0) + 1
                last = self._last_reopen_log.get(model)
                if last is not None and now - last < self.timing.duration / 10:
                    return
                self._last_reopen_log[model] = now
                failed = self._failed_trials.pop(model)
                retry = event.retry_after_s
                self.recorder.event(
                    "circuit",
                    f"{model}: still open, {failed} more trial(s) failed"
                    + (
                        f" (open {retry:.1f} s more: the open time doubles with each failed "
                        f"trial, to at most {self.timing.max_open_s:g} s)"
                        if retry
                        else ""
                    ),
                    at=now,
                )
                return
            self._failed_trials.pop(model, None)
            self._last_reopen_log.pop(model, None)
        reason = event.reason.replace("_", " ")
        self.recorder.event(
            "circuit",
            f"{model}: {event.from_state.replace('_', '-')} -> "
            f"{event.to_state.replace('_', '-')} ({reason})",
            at=now,
        )


def _request_error_kind(exc: BaseException) -> str:
    if isinstance(exc, AllBackendsFailedError):
        kinds = [a.error_kind for a in exc.attempts]
        return kinds[-1] if kinds else "unavailable"
    return classify(exc)


_SERVED: ContextVar[list[str] | None] = ContextVar("modelwatch_demo_served", default=None)


@contextlib.contextmanager
def serving(holder: list[str]) -> Iterator[None]:
    """Collect, in ``holder``, the model of every successful attempt of the request (the
    router runs attempts on its own threads with a copy of this context: the list is shared)."""
    token = _SERVED.set(holder)
    try:
        yield
    finally:
        _SERVED.reset(token)


class TrafficGenerator:
    """A few worker threads that send analyses to the engine, one request at a time each.

    Bounded by construction: ``workers`` requests in flight at most, each worker pausing
    ``think_s`` (a seeded random range) between requests. Deterministic per seed: worker
    ``i`` draws its analyses and inputs from ``Random(seed * 1000 + i)``.
    """

    def __init__(
        self,
        engine: Serving,
        *,
        workers: int,
        seed: int,
        think_s: tuple[float, float] = (0.05, 0.2),
    ) -> None:
        self._engine = engine
        self._stop = threading.Event()
        self._think = think_s
        self._last_served: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(
                target=self._work,
                args=(random.Random(seed * 1000 + i),),
                name=f"modelwatch-demo-traffic-{i + 1}",
            )
            for i in range(workers)
        ]

    def start(self) -> None:
        """Start the workers."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop and wait for the workers (each finishes its request, bounded by the call
        deadline)."""
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def _work(self, rng: random.Random) -> None:
        specs = list(self._engine.analyses.values())
        weights = [s.weight for s in specs]
        while not self._stop.is_set():
            spec = rng.choices(specs, weights)[0]
            text = rng.choice(spec.inputs)
            record = self._engine.analyze_for_user(spec.name, text)
            self._noteserving(record)
            self._stop.wait(rng.uniform(*self._think))

    def _noteserving(self, record: RequestRecord) -> None:
        """Log an event when an analysis starts being served by another model, or fails."""
        now_serving = record.served_by if record.ok else None
        with self._lock:
            before = self._last_served.get(record.analysis, record.primary)
            if now_serving == before:
                return
            self._last_served[record.analysis] = now_serving
        recorder = self._engine.recorder
        if now_serving is None:
            recorder.event("users", f"{record.analysis}: a user request failed ({record.error})")
        elif now_serving == record.primary:
            recorder.event("failover", f"{record.analysis}: back on primary {now_serving}")
        elif before is None:
            recorder.event("failover", f"{record.analysis}: answered again, by {now_serving}")
        else:
            recorder.event("failover", f"{record.analysis}: failing over {before} -> {now_serving}")
