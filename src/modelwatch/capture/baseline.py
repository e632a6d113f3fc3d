"""Learned baselines of latency and error rate per model and analysis: ``modelwatch.anomaly.score``.

Every monitored model call (users' calls; probes are left out) feeds its model's baseline,
through the end-of-call listener (``modelwatch.capture._record``), registered once something
reads the baselines: the first collection of the gauge, a ``Drift(model=...)``, an
:class:`AvoidAnomalous` ordering.
Calls are summarised per minute (median latency of the successful ones, error rate), and
minute summaries are kept twice: the last day, and per hour of the day (UTC) for the last
week. The baseline is the median and MAD of the minute summaries: of the same hour of day
once :data:`SEASONAL_MIN_MINUTES` of them exist there (seasonality: a service that is slower
every afternoon is not anomalous every afternoon), else of the last day once
:data:`MIN_HISTORY_MINUTES` exist. The score is a robust z-score of the last
:data:`CURRENT_MINUTES` minutes against it: ``(now - median) / (1.4826 * MAD + floor)``, the
floor being the binomial noise of the error rate and 1 % of the median latency, so a quiet
baseline with MAD 0 does not make every blip an anomaly. Median/MAD rather than mean/stddev
(or an EWMA): one outage in the history does not move the baseline.

The call path only appends a tuple to a bounded queue; the work happens when the gauge is
collected (or :func:`anomaly_scores` is asked). Time comes from the injectable clock
(:func:`set_clock`). :class:`AvoidAnomalous` is an opt-in router ordering that moves a
backend whose model is anomalous behind the others.
"""

from __future__ import annotations

import math
import os
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import TYPE_CHECKING, Any, Final, TypeVar

from modelwatch import errorkinds, semconv
from modelwatch._clock import SYSTEM_CLOCK, TimeSource
from modelwatch.capture._bounded import BoundedRegistry
from modelwatch.capture._record import CallRecord, add_listener
from modelwatch.capture._telemetry import Attributes, register_observable

if TYPE_CHECKING:
    from modelwatch.resilience.ordering import Candidate

__all__ = ["AvoidAnomalous", "anomaly_scores", "record_end", "set_clock"]

MIN_HISTORY_MINUTES: Final = 30
SEASONAL_MIN_MINUTES: Final = 180  # three days of one hour
CURRENT_MINUTES: Final = 5
DAY_MINUTES: Final = 1440
#: calls queued before the next collection; beyond it the queue is drained on the spot
QUEUE_CAP: Final = 16_384
#: latencies kept per minute for its median
MINUTE_SAMPLE_CAP: Final = 256
#: (model, analysis) pairs with a baseline: at most ~280 KiB each with a week of history
MAX_BASELINES: Final = 200

#: (model, analysis, error kind or None, duration s, input tokens, output tokens, wall time)
CallEnd = tuple[str, "str | None", "str | None", float, "int | None", "int | None", float]
_queue: deque[CallEnd] = deque()
_drain_lock = threading.Lock()
_clock: TimeSource = SYSTEM_CLOCK
_now: Callable[[], float] = time.time  # _clock.time, bound once (the call path reads it)
#: other consumers of the same feed (drift monitors)
_consumers: list[Callable[[Sequence[CallEnd]], None]] = []


def set_clock(clock: TimeSource) -> None:
    """Read time from ``clock`` (tests pass a :class:`~modelwatch._clock.ManualClock`)."""
    global _clock, _now
    _clock = clock
    _now = clock.time


def record_end(  # noqa: PLR0917 - positional: it runs on every call
    model: str | None,
    analysis: str | None,
    kind: str | None,
    duration_s: float,
    input_tokens: int | None,
    output_tokens: int | None,
) -> None:
    """A monitored model call ended (the end-of-call listener calls this; cheap)."""
    if model is None:
        return
    _queue.append((model, analysis, kind, duration_s, input_tokens, output_tokens, _now()))
    if len(_queue) > QUEUE_CAP:
        drain()


def _on_call(record: CallRecord) -> None:
    """The end-of-call listener: users' model calls feed the baselines and drift monitors."""
    if record.is_model and not record.probe:
        record_end(
            record.model,
            record.analysis,
            record.error_kind,
            record.duration_s,
            record.input_tokens,
            record.output_tokens,
        )


def ensure_listening() -> None:
    """Start feeding from monitored calls (idempotent). Called when something will read the
    baselines or the feed: the first collection of ``modelwatch.anomaly.score``, a
    ``Drift(model=...)``, an :class:`AvoidAnomalous` ordering. Until then no call pays for an
    end-of-call record."""
    add_listener(_on_call)


@dataclass
class _Minute:
    start: float
    calls: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def summary(self) -> tuple[float | None, float, int]:
        """(median latency or None, error rate, calls)."""
        lat = median(self.latencies) if self.latencies else None
        return lat, self.errors / self.calls, self.calls


_Summary = tuple["float | None", float, int]


class _Ring:
    """The last ``capacity`` minute summaries, packed in three ``array('d')`` (24 bytes a
    minute instead of ~130 for a tuple of Python numbers): a full week of history is ~280 KiB
    per baseline."""

    __slots__ = ("_calls", "_lat", "_next", "_rate", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lat, self._rate, self._calls = array("d"), array("d"), array("d")
        self._next = 0

    def append(self, summary: _Summary) -> None:
        lat, rate, calls = summary
        value = math.nan if lat is None else lat
        if len(self._calls) < self.capacity:
            self._lat.append(value)
            self._rate.append(rate)
            self._calls.append(calls)
            return
        i = self._next
        self._lat[i], self._rate[i], self._calls[i] = value, rate, calls
        self._next = (i + 1) % self.capacity

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[_Summary]:
        for lat, rate, calls in zip(self._lat, self._rate, self._calls, strict=True):
            yield (None if math.isnan(lat) else lat), rate, int(calls)


class Baseline:
    """The learned baseline of one (model, analysis)."""

    def __init__(self) -> None:
        self.current: _Minute | None = None
        self.day = _Ring(DAY_MINUTES)
        self.by_hour = [_Ring(7 * 60) for _ in range(24)]
        self.recent: deque[tuple[float, _Minute]] = deque(maxlen=CURRENT_MINUTES)
        self._lock = threading.Lock()

    def add(self, kind: str | None, duration: float, at: float) -> None:
        if kind is not None and errorkinds.error_rate_excluded(kind):
            return
        minute = at - at % 60.0
        with self._lock:
            m = self.current
            if m is None or m.start != minute:
                if m is not None:
                    self._close(m)
                m = self.current = _Minute(minute)
                self.recent.append((minute, m))
            m.calls += 1
            if kind is None:
                if len(m.latencies) < MINUTE_SAMPLE_CAP:
                    m.latencies.append(duration)
            else:
                m.errors += 1

    def _close(self, m: _Minute) -> None:
        s = m.summary()
        self.day.append(s)
        self.by_hour[int(m.start // 3600) % 24].append(s)

    def scores(self, now: float) -> dict[str, float]:
        """``{"latency": z, "error_rate": z}`` now (a signal without enough history is absent)."""
        with self._lock:
            history = self.by_hour[int(now // 3600) % 24]
            if len(history) < SEASONAL_MIN_MINUTES:
                history = self.day
            if len(history) < MIN_HISTORY_MINUTES:
                return {}
            recent = [m for start, m in self.recent if now - start < CURRENT_MINUTES * 60]
            past = list(history)
        calls = sum(m.calls for m in recent)
        if not calls:
            return {}
        out: dict[str, float] = {}
        out["error_rate"] = _error_z(past, recent, calls)
        lats = [s[0] for s in past if s[0] is not None]
        mine = [x for m in recent for x in m.latencies]
        if len(lats) >= MIN_HISTORY_MINUTES and mine:
            base_lat = median(lats)
            mad_lat = median(abs(x - base_lat) for x in lats)
            scale = 1.4826 * mad_lat + 0.01 * base_lat + 1e-9
            out["latency"] = (median(mine) - base_lat) / scale
        return out


def _error_z(past: list[_Summary], recent: list[_Minute], calls: int) -> float:
    """Errors are rare events (most minutes have none, so a median of minute rates is 0):
    the baseline rate is pooled over the history minutes, leaving out those far above it
    beyond binomial noise (an outage there does not raise the baseline); the scale is the
    binomial noise of the current window."""
    total = sum(s[2] for s in past)
    pooled = sum(s[1] * s[2] for s in past) / total
    kept = [
        s for s in past if s[1] <= pooled + 4 * math.sqrt(pooled * (1 - pooled) / s[2]) + 1 / s[2]
    ]
    hist_calls = sum(s[2] for s in kept) or total
    base = sum(s[1] * s[2] for s in kept) / hist_calls if kept else pooled
    noise = math.sqrt(max(base * (1 - base), 1.0 / hist_calls) / calls)
    return (sum(m.errors for m in recent) / calls - base) / noise


_Key = tuple[str, "str | None"]
_OVERFLOW: Final[_Key] = (semconv.OTEL_METRIC_OVERFLOW, None)
_baselines: BoundedRegistry[_Key, Baseline] = BoundedRegistry(
    "modelwatch.anomaly.score", MAX_BASELINES, overflow=_OVERFLOW
)


def drain() -> None:
    """Feed every queued call end into the baselines (and the drift monitors)."""
    with _drain_lock:
        batch: list[CallEnd] = []
        pop = _queue.popleft
        while True:
            try:
                batch.append(pop())
            except IndexError:
                break
    for model, analysis, kind, duration, _in, _out, at in batch:
        _baselines.get((model, analysis), _new).add(kind, duration, at)
    for consumer in list(_consumers):
        consumer(batch)


def _new(_key: _Key) -> Baseline:
    return Baseline()


def anomaly_scores() -> dict[tuple[str, str | None], dict[str, float]]:
    """``{(model, analysis): {"latency": z, "error_rate": z}}`` now."""
    drain()
    now = _clock.time()
    return {key: b.scores(now) for key, b in _baselines.items()}


def _observe() -> Iterable[tuple[float, Attributes]]:
    ensure_listening()
    for (model, analysis), scores in anomaly_scores().items():
        for signal, z in scores.items():
            if (model, analysis) == _OVERFLOW:
                attrs: dict[str, Any] = {semconv.OTEL_METRIC_OVERFLOW: True}
            else:
                attrs = {semconv.GEN_AI_REQUEST_MODEL: model, semconv.MODELWATCH_ANALYSIS: analysis}
            yield z, {**attrs, semconv.ANOMALY_SIGNAL: signal}


register_observable(semconv.ANOMALY_SCORE, _observe)

C = TypeVar("C", bound="Candidate")


class AvoidAnomalous:
    """A router ordering (opt-in: ``Router(..., ordering=AvoidAnomalous())``) that moves
    backends whose model's latency or error-rate anomaly score is above ``threshold``
    behind the others, keeping them as the last backups; ``inner`` orders first (default:
    priority). Scores are read at most every ``refresh_s`` seconds."""

    def __init__(self, threshold: float = 4.0, inner: Any = None, refresh_s: float = 10.0) -> None:
        if not threshold > 0:
            raise ValueError(f"AvoidAnomalous threshold must be > 0, got {threshold!r}")
        ensure_listening()
        self.threshold = threshold
        self.inner = inner
        self.refresh_s = refresh_s
        self._anomalous: frozenset[str] = frozenset()
        self._read_at = -math.inf

    def anomalous_models(self) -> frozenset[str]:
        """Models with a score above the threshold (any analysis), refreshed lazily."""
        now = _clock.time()
        if now - self._read_at >= self.refresh_s:
            self._read_at = now
            self._anomalous = frozenset(
                model
                for (model, _), scores in anomaly_scores().items()
                if any(z > self.threshold for z in scores.values())
            )
        return self._anomalous

    def __call__(self, candidates: Sequence[C]) -> Sequence[C]:
        """Healthy candidates first (in ``inner``'s order), anomalous ones last."""
        ordered = list(self.inner(candidates)) if self.inner is not None else list(candidates)
        bad = self.anomalous_models()
        if not bad:
            return ordered
        healthy = [c for c in ordered if c.backend.model not in bad]
        return healthy + [c for c in ordered if c.backend.model in bad]


def _reset_after_fork() -> None:
    global _drain_lock
    _drain_lock = threading.Lock()
    _queue.clear()  # the parent's calls are the parent's


os.register_at_fork(after_in_child=_reset_after_fork)
