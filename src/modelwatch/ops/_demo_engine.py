"""The demo's "AI engine": three analysis types, each a :class:`modelwatch.Router` over real
model clients pointed at a local :class:`~modelwatch.testing.fake_server.FakeModelServer`.

==========================  ===================================  ==============================
analysis                    primary                              backup
==========================  ===================================  ==============================
``code_review``             ``google/flan-t5-large``             ``Llama-3.1-8B-Instruct``
                            (HF text generation)                 (HF chat completion)
``requirement_extraction``  ``facebook/bart-large-cnn``          ``distilbart-cnn-12-6``
                            (HF summarization)                   (HF summarization)
``tech_recommendation``     ``google/flan-t5-xl``                ``gpt-4o-mini``
                            (HF text generation)                 (``openai`` chat completions)
==========================  ===================================  ==============================

Every model call goes through the real ``huggingface_hub.InferenceClient`` or ``openai.OpenAI``
client, so the errors the router classifies are the errors those clients really raise.
The engine also keeps its own record of every attempt (:mod:`modelwatch.ops._demo_record`),
independent of modelwatch's telemetry, for the live view and the summary.
"""

from __future__ import annotations

import contextvars
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from modelwatch.errors import AllBackendsFailedError
from modelwatch.ops._demo_record import (
    AttemptRecord,
    Origin,
    Recorder,
    RequestRecord,
    TransitionRecord,
)
from modelwatch.resilience import (
    Backend,
    Breaker,
    BreakerPolicy,
    RetryPolicy,
    Router,
    Transition,
)
from modelwatch.resilience._kinds import default_classify
from modelwatch.testing.fake_server import FakeModelServer

__all__ = [
    "ANALYSES",
    "FAILING_MODEL",
    "SLOW_MODEL",
    "AnalysisSpec",
    "Answer",
    "Engine",
    "ModelSpec",
    "Timing",
    "TrafficGenerator",
]

ClientKind = Literal["text_generation", "summarization", "hf_chat", "openai_chat"]

#: Never a real key: the fake server accepts anything, and the scrubber would hide it anyway.
DEMO_API_KEY: Final = "sk-modelwatch-demo-not-a-real-key"
MAX_NEW_TOKENS: Final = 48

_origin: contextvars.ContextVar[Origin] = contextvars.ContextVar(
    "modelwatch_demo_origin", default="probe"
)


@dataclass(frozen=True)
class ModelSpec:
    """A model the engine calls, and through which client."""

    model: str
    provider: str
    operation: str
    client: ClientKind

    @property
    def short(self) -> str:
        """The model name without its organisation."""
        return self.model.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class AnalysisSpec:
    """An analysis type: its instruction, its models (primary first) and sample inputs."""

    name: str
    instruction: str
    primary: ModelSpec
    backup: ModelSpec
    inputs: tuple[str, ...]
    #: share of the traffic
    weight: float = 1.0

    @property
    def models(self) -> tuple[ModelSpec, ModelSpec]:
        """Primary, then backup."""
        return (self.primary, self.backup)


FAILING_MODEL: Final = "google/flan-t5-large"
SLOW_MODEL: Final = "facebook/bart-large-cnn"

ANALYSES: Final[tuple[AnalysisSpec, ...]] = (
    AnalysisSpec(
        "code_review",
        "Review this code and list its problems:",
        ModelSpec(FAILING_MODEL, "huggingface", "text_generation", "text_generation"),
        ModelSpec("meta-llama/Llama-3.1-8B-Instruct", "huggingface", "chat", "hf_chat"),
        (
            "def add(a, b): return a - b",
            "for i in range(len(items)): print(items[i])",
            "password = 'hunter2'  # TODO move to config",
            "except Exception: pass",
            "query = f\"SELECT * FROM users WHERE name = '{name}'\"",
        ),
        weight=1.2,
    ),
    AnalysisSpec(
        "requirement_extraction",
        "",
        ModelSpec(SLOW_MODEL, "huggingface", "summarization", "summarization"),
        ModelSpec("sshleifer/distilbart-cnn-12-6", "huggingface", "summarization", "summarization"),
        (
            "The system shall let users reset their password by e-mail. Links expire in an hour.",
            "Reports must export to CSV and PDF within five seconds. Exports are audited.",
            "The API must answer 99.9 percent of requests within 300 ms. Errors are logged.",
            "Administrators can suspend accounts. Suspended users cannot log in or call the API.",
        ),
    ),
    AnalysisSpec(
        "tech_recommendation",
        "Recommend a technology for:",
        ModelSpec("google/flan-t5-xl", "huggingface", "text_generation", "text_generation"),
        ModelSpec("gpt-4o-mini", "openai", "chat", "openai_chat"),
        (
            "a message queue for 10k events per second with at-least-once delivery",
            "a cache in front of a slow inventory service",
            "full-text search over two million product descriptions",
            "scheduling nightly batch jobs across three data centres",
        ),
        weight=0.8,
    ),
)


@dataclass(frozen=True)
class Timing:
    """Timeouts and breaker settings scaled to the run's duration, so that a 10 s run in a
    test tells the same story as the default minute. Production defaults are much longer."""

    duration: float

    @property
    def attempt_timeout_s(self) -> float:
        """Per-attempt cap: a hung model costs this much, then the call fails over."""
        return round(min(1.5, max(0.8, self.duration * 0.02)), 2)

    @property
    def client_timeout_s(self) -> float:
        """The HTTP clients' own timeout: a little past the router's, so the router's
        per-attempt timeout is what users feel, and an abandoned request still ends soon."""
        return round(self.attempt_timeout_s + 0.5, 2)

    @property
    def slow_latency_s(self) -> float:
        """Latency the slow model gains in the scenario: slow, but within the timeout."""
        return round(self.attempt_timeout_s * 0.6, 2)

    @property
    def latency_alert_s(self) -> float:
        """The p95 threshold of the latency alert the demo evaluates (production: 30 s)."""
        return round(self.attempt_timeout_s * 0.4, 2)

    @property
    def call_timeout_s(self) -> float:
        """Whole-call deadline."""
        return round(self.attempt_timeout_s * 3, 2)

    @property
    def open_s(self) -> float:
        """How long an opened breaker refuses calls before a trial."""
        return round(min(3.0, max(0.5, self.duration * 0.03)), 2)

    @property
    def probe_interval_s(self) -> float:
        """How often an open breaker probes its backend in the background."""
        return round(min(1.0, max(0.25, self.duration * 0.01)), 2)

    @property
    def health_interval_s(self) -> float:
        """How often health checks probe."""
        return round(min(2.0, max(1.0, self.duration / 30)), 2)

    def breaker_policy(self) -> BreakerPolicy:
        """The demo's breaker policy (see :meth:`describe`)."""
        return BreakerPolicy(
            consecutive_failures=3,
            failure_ratio=0.5,
            min_calls=8,
            window_s=max(2.0, self.duration * 0.1),
            slow_call_s=self.attempt_timeout_s,
            open_s=self.open_s,
            max_open_s=self.open_s * 4,
            backoff_factor=2.0,
            jitter=0.0,  # deterministic with --seed
            trial_lease_s=self.client_timeout_s * 2,
            close_after=2,
            probe_interval_s=self.probe_interval_s,
            probe_timeout_s=self.attempt_timeout_s,
        )

    def retry_policy(self) -> RetryPolicy:
        """Fail over at once; retry the same model at most once, briefly."""
        return RetryPolicy(max_retries=1, backoff_s=0.1, max_wait_s=self.attempt_timeout_s)

    def describe(self) -> str:
        """One line for the header: how the demo's settings differ from production's."""
        return (
            f"breakers tuned for a {self.duration:g} s demo: open after 3 failures in a row, "
            f"stay open {self.open_s:g} s (production default 10 s), probe every "
            f"{self.probe_interval_s:g} s (default 5 s); attempt timeout "
            f"{self.attempt_timeout_s:g} s (default 25 s)"
        )


@dataclass(frozen=True)
class Answer:
    """What a backend returns: the text, which model wrote it, and its token usage.

    ``usage`` and ``model`` are read by modelwatch's usage extraction, so cost and tokens
    reach the telemetry without the backend touching it.
    """

    text: str
    model: str
    #: a dict with ``input_tokens``/``output_tokens``, or the client's own usage object
    usage: Any = None


def _usage(input_tokens: int | None, output_tokens: int | None) -> dict[str, int]:
    usage = {}
    if input_tokens is not None:
        usage["input_tokens"] = int(input_tokens)
    if output_tokens is not None:
        usage["output_tokens"] = int(output_tokens)
    return usage


def _model_caller(
    spec: ModelSpec, server: FakeModelServer, timeout_s: float
) -> Callable[[str], Answer]:
    """A function that sends one prompt to ``spec.model`` through its real client."""
    if spec.client == "openai_chat":
        import openai

        oai = openai.OpenAI(
            base_url=server.openai_base_url,
            api_key=DEMO_API_KEY,
            timeout=timeout_s,
            max_retries=0,  # the router decides about retries, not the client
        )

        def openai_chat(prompt: str) -> Answer:
            out = oai.chat.completions.create(
                model=spec.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=MAX_NEW_TOKENS,
            )
            return Answer(out.choices[0].message.content or "", out.model, out.usage)

        return openai_chat

    from huggingface_hub import InferenceClient

    client = InferenceClient(model=server.model_url(spec.model), timeout=timeout_s)

    if spec.client == "text_generation":

        def text_generation(prompt: str) -> Answer:
            out = client.text_generation(prompt, max_new_tokens=MAX_NEW_TOKENS, details=True)
            generated = out.details.generated_tokens if out.details is not None else None
            return Answer(out.generated_text, spec.model, _usage(len(prompt.split()), generated))

        return text_generation

    if spec.client == "summarization":

        def summarization(text: str) -> Answer:
            out = client.summarization(text)
            return Answer(out.summary_text, spec.model)

        return summarization

    def hf_chat(prompt: str) -> Answer:
        out = client.chat_completion(
            messages=[{"role": "user", "content": prompt}], max_tokens=MAX_NEW_TOKENS
        )
        return Answer(out.choices[0].message.content or "", spec.model, out.usage)

    return hf_chat


class Engine:
    """The three analyses, each behind a router with a primary and a backup model.

    ``analyze(name, text)`` is what a service would expose; every backend call is also
    written to ``recorder`` (origin ``"user"`` inside :meth:`analyze_for_user`, ``"health"``
    inside :meth:`analyze_for_health`, ``"probe"`` for model probes).
    """

    def __init__(
        self,
        server: FakeModelServer,
        recorder: Recorder,
        timing: Timing,
        analyses: tuple[AnalysisSpec, ...] = ANALYSES,
    ) -> None:
        self.server = server
        self.recorder = recorder
        self.timing = timing
        self.analyses = {a.name: a for a in analyses}
        self.routers: dict[str, Router] = {}
        self._transitions_lock = threading.Lock()
        self._failed_trials: dict[str, int] = {}
        self._last_reopen_log: dict[str, float] = {}
        breaker, retry = timing.breaker_policy(), timing.retry_policy()
        for analysis in analyses:
            backends = []
            for spec in analysis.models:
                call = self._recorded(
                    analysis.name,
                    spec,
                    _model_caller(spec, server, timing.client_timeout_s),
                )
                probe_input = analysis.inputs[0]
                backends.append(
                    Backend(
                        call,
                        model=spec.model,
                        provider=spec.provider,
                        operation=spec.operation,
                        analysis=analysis.name,
                        server_address=server.url,
                        probe=self._probe(call, probe_input),
                    )
                )
            router = Router(
                analysis.name,
                backends,
                breaker=breaker,
                retry=retry,
                timeout_s=timing.call_timeout_s,
                attempt_timeout_s=timing.attempt_timeout_s,
            )
            for spec in analysis.models:
                router.breaker(spec.model).add_listener(self._on_transition)
            self.routers[analysis.name] = router

    def close(self) -> None:
        """Release the routers' worker threads and background probes."""
        for router in self.routers.values():
            router.close()

    # ------------------------------------------------------------------ calls
    def prompt(self, analysis: str, text: str) -> str:
        """The prompt an analysis sends for ``text``."""
        instruction = self.analyses[analysis].instruction
        return f"{instruction} {text}" if instruction else text

    def analyze(self, analysis: str, text: str) -> Answer:
        """Run one analysis through its router; raises what the router raises."""
        result: Answer = self.routers[analysis].call(self.prompt(analysis, text))
        return result

    def analyze_for_user(self, analysis: str, text: str) -> RequestRecord:
        """Run one analysis as a user request and record how it went."""
        token = _origin.set("user")
        start = self.recorder.now()
        primary = self.analyses[analysis].primary.model
        try:
            answer = self.analyze(analysis, text)
        except Exception as exc:
            kind = _request_error_kind(exc)
            record = RequestRecord(start, self.recorder.now(), analysis, None, kind, primary)
        else:
            record = RequestRecord(
                start, self.recorder.now(), analysis, answer.model, None, primary
            )
        finally:
            _origin.reset(token)
        self.recorder.request(record)
        return record

    def _recorded(
        self, analysis: str, spec: ModelSpec, fn: Callable[[str], Answer]
    ) -> Callable[[str], Answer]:
        recorder = self.recorder

        def call(prompt: str) -> Answer:
            token = recorder.attempt_started(spec.model)
            start = recorder.now()
            try:
                answer = fn(prompt)
            except BaseException as exc:
                recorder.attempt(
                    token,
                    AttemptRecord(
                        start,
                        recorder.now(),
                        analysis,
                        spec.model,
                        _origin.get(),
                        default_classify(exc),
                    ),
                )
                raise
            recorder.attempt(
                token,
                AttemptRecord(start, recorder.now(), analysis, spec.model, _origin.get(), None),
            )
            return answer

        call.__name__ = call.__qualname__ = f"call_{spec.short.replace('-', '_').replace('.', '_')}"
        return call

    @staticmethod
    def _probe(call: Callable[[str], Answer], text: str) -> Callable[[], bool]:
        def probe() -> bool:
            token = _origin.set("probe")
            try:
                return bool(call(text).text)
            finally:
                _origin.reset(token)

        return probe

    def analyze_for_health(self, analysis: str, text: str) -> Answer:
        """Run one analysis as a synthetic health check (recorded with origin ``"health"``)."""
        token = _origin.set("health")
        try:
            return self.analyze(analysis, text)
        finally:
            _origin.reset(token)

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
                    f"circuit {model}: still open, {failed} more trial(s) failed"
                    + (f" (open {retry:.1f} s more)" if retry else ""),
                    at=now,
                )
                return
            self._failed_trials.pop(model, None)
            self._last_reopen_log.pop(model, None)
        reason = event.reason.replace("_", " ")
        self.recorder.event(
            "circuit",
            f"circuit {model}: {event.from_state.replace('_', '-')} -> "
            f"{event.to_state.replace('_', '-')} ({reason})",
            at=now,
        )


def _request_error_kind(exc: BaseException) -> str:
    if isinstance(exc, AllBackendsFailedError):
        kinds = [a.error_kind for a in exc.attempts]
        return kinds[-1] if kinds else "unavailable"
    return default_classify(exc)


class TrafficGenerator:
    """A few worker threads that send analyses to the engine, one request at a time each.

    Bounded by construction: ``workers`` requests in flight at most, each worker pausing
    ``think_s`` (a seeded random range) between requests. Deterministic per seed: worker
    ``i`` draws its analyses and inputs from ``Random(seed * 1000 + i)``.
    """

    def __init__(
        self,
        engine: Engine,
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
            self._note_serving(record)
            self._stop.wait(rng.uniform(*self._think))

    def _note_serving(self, record: RequestRecord) -> None:
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


def is_answer(value: Any) -> bool:
    """A synthetic probe's ``expect``: the router answered with some text."""
    return isinstance(value, Answer) and bool(value.text)
