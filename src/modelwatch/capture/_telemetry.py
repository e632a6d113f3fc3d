"""Where modelwatch's tracer and instruments come from.

By default they come from the global OpenTelemetry providers (whatever the host or
:func:`modelwatch.configure` installed, or the API's no-op proxies). :func:`use_providers`
points modelwatch at other providers for a while (``modelwatch.testing.capture`` does this),
without touching the globals.

Instruments are created once per :class:`Telemetry` (one per provider pair) from the specs in
:mod:`modelwatch.semconv`, so every module records with the same names, units and buckets.
Observable instruments are declared once with :func:`register_observable`; each
:class:`Telemetry` creates all of them, so callbacks survive a change of providers.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.trace import Tracer, TracerProvider

from modelwatch import semconv
from modelwatch._safety import report_internal_error
from modelwatch._version import __version__

Attributes = Mapping[str, Any]
ObservableCallback = Callable[[], Iterable[tuple[float, Attributes]]]

_observables: dict[str, tuple[semconv.MetricSpec, ObservableCallback]] = {}
#: The most histogram records waiting for a collection (per provider pair); beyond it they are
#: recorded on the spot. ~16k * ~100 bytes: a bounded couple of MiB at worst.
DEFER_CAP = 16_384
_lock = threading.RLock()


def allowed_metric_attributes(attributes: Attributes) -> dict[str, Any]:
    """Keep only the allow-listed, non-None attributes: nothing else may label a metric."""
    return {
        k: v
        for k, v in attributes.items()
        if k in semconv.METRIC_ATTRIBUTE_ALLOWLIST and v is not None
    }


class Telemetry:
    """A tracer and every modelwatch instrument, bound to one tracer and meter provider."""

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
        self.tracer: Tracer = tracer_provider.get_tracer(semconv.INSTRUMENTATION_SCOPE, __version__)
        self.meter: Meter = meter_provider.get_meter(semconv.INSTRUMENTATION_SCOPE, __version__)
        self._instruments: dict[str, Any] = {}
        self._instrument_lock = threading.Lock()
        # the hot path's instruments, created eagerly
        self.duration = self.instrument(semconv.OPERATION_DURATION)
        self.tokens = self.instrument(semconv.TOKEN_USAGE)
        self.time_to_first_chunk = self.instrument(semconv.TIME_TO_FIRST_CHUNK)
        # ``modelwatch.cost`` is an observable counter over running totals kept here, per
        # provider pair: adding to a dict costs ~0.2 µs where ``Counter.add`` costs 7-12 µs.
        self._cost_totals: dict[tuple[tuple[str, Any], ...], float] = {}
        self._cost_lock = threading.Lock()
        # Histogram records of the call path wait here and are replayed into their histograms
        # at the start of the next collection (see ``defer``). Only with an SDK meter
        # provider: without one nothing collects, and a no-op record costs nothing anyway.
        self._deferred: deque[tuple[Any, float, Attributes]] = deque()
        self.defers = type(meter_provider).__module__.startswith("opentelemetry.sdk")
        self.meter.create_observable_counter(
            semconv.COST.name,
            [self._observe_cost],
            unit=semconv.COST.unit,
            description=semconv.COST.description,
        )
        with _lock:
            for spec, callback in list(_observables.values()):
                self._create_observable(spec, callback)

    def add_cost(self, key: tuple[tuple[str, Any], ...], usd: float) -> None:
        """Add ``usd`` to the running ``modelwatch.cost`` total of attribute set ``key``."""
        with self._cost_lock:
            self._cost_totals[key] = self._cost_totals.get(key, 0.0) + usd

    def defer(self, histogram: Any, value: float, attributes: Attributes) -> None:
        """Record ``value`` into ``histogram`` at the start of the next collection.

        The SDK runs every observable callback (this holder's cost counter drains the queue)
        before it reads the synchronous instruments, so the exported histogram is the same as
        with a record on the spot, while the monitored call pays an append (~0.1 µs) instead
        of ``Histogram.record`` (~8 µs). Bounded: past ``DEFER_CAP`` queued values, records
        happen on the spot. (Exemplars are unaffected: the call path records after its span
        is detached, so none were taken.)
        """
        if self.defers and len(self._deferred) < DEFER_CAP:
            self._deferred.append((histogram, value, attributes))
        else:
            histogram.record(value, attributes)

    def drain(self) -> None:
        """Replay every deferred record into its histogram now (collection time)."""
        pop = self._deferred.popleft
        while True:
            try:
                histogram, value, attributes = pop()
            except IndexError:
                return
            try:
                histogram.record(value, attributes)
            except Exception as exc:
                report_internal_error("deferred_record", exc)

    def _observe_cost(self, _options: CallbackOptions) -> Iterator[Observation]:
        self.drain()  # first: the histograms are read after the observable callbacks
        with self._cost_lock:
            totals = list(self._cost_totals.items())
        return iter([Observation(total, dict(key)) for key, total in totals])

    def _reset_after_fork(self) -> None:
        self._cost_lock = threading.Lock()
        self._instrument_lock = threading.Lock()
        self._cost_totals.clear()  # the parent reports what it spent
        self._deferred.clear()  # and records what it measured

    def instrument(self, spec: semconv.MetricSpec) -> Any:
        """The synchronous instrument for ``spec`` (histogram, counter or up-down counter)."""
        found = self._instruments.get(spec.name)
        if found is not None:
            return found
        with self._instrument_lock:
            found = self._instruments.get(spec.name)
            if found is None:
                found = self._create(spec)
                self._instruments[spec.name] = found
            return found

    def _create(self, spec: semconv.MetricSpec) -> Any:
        if spec.instrument == "histogram":
            return self.meter.create_histogram(
                spec.name,
                unit=spec.unit,
                description=spec.description,
                explicit_bucket_boundaries_advisory=list(spec.buckets or ()),
            )
        if spec.instrument == "counter":
            return self.meter.create_counter(
                spec.name, unit=spec.unit, description=spec.description
            )
        if spec.instrument == "up_down_counter":
            return self.meter.create_up_down_counter(
                spec.name, unit=spec.unit, description=spec.description
            )
        raise ValueError(f"{spec.name} is observable: declare it with register_observable()")

    def _create_observable(self, spec: semconv.MetricSpec, callback: ObservableCallback) -> None:
        def observe(_options: CallbackOptions) -> Iterator[Observation]:
            try:
                points = list(callback())
            except Exception as exc:
                report_internal_error(f"observe:{spec.name}", exc)
                return iter(())
            return iter(
                [Observation(value, allowed_metric_attributes(attrs)) for value, attrs in points]
            )

        if spec.instrument == "observable_gauge":
            self.meter.create_observable_gauge(
                spec.name, [observe], unit=spec.unit, description=spec.description
            )
        elif spec.instrument == "observable_counter":
            self.meter.create_observable_counter(
                spec.name, [observe], unit=spec.unit, description=spec.description
            )
        elif spec.instrument == "observable_up_down_counter":
            self.meter.create_observable_up_down_counter(
                spec.name, [observe], unit=spec.unit, description=spec.description
            )
        else:  # pragma: no cover - a programming error in semconv
            raise ValueError(f"{spec.name} is not observable")


_current: Telemetry | None = None
_override: tuple[TracerProvider, MeterProvider] | None = None
_configured: tuple[TracerProvider, MeterProvider] | None = None


def telemetry() -> Telemetry:
    """The :class:`Telemetry` for the providers in use now (built on first use)."""
    current = _current
    if current is not None:
        return current
    return _rebuild()


def _rebuild() -> Telemetry:
    global _current
    with _lock:
        if _override is not None:
            tp, mp = _override
        elif _configured is not None:
            tp, mp = _configured
        else:
            tp, mp = trace.get_tracer_provider(), metrics.get_meter_provider()
        _current = Telemetry(tp, mp)
        return _current


def invalidate() -> None:
    """Forget the cached instruments; the next call builds them from the providers in use."""
    global _current
    with _lock:
        _current = None


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.RLock()
    if _current is not None:
        _current._reset_after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


def set_configured_providers(
    tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
) -> None:
    """Use the providers ``configure()`` built (``None``: back to the global ones)."""
    global _configured
    with _lock:
        if tracer_provider is None or meter_provider is None:
            _configured = None
        else:
            _configured = (tracer_provider, meter_provider)
        invalidate()


def register_observable(spec: semconv.MetricSpec, callback: ObservableCallback) -> None:
    """Declare an observable instrument once; every :class:`Telemetry` will observe it.

    ``callback`` returns ``(value, attributes)`` pairs; attributes are filtered by the
    allow-list. Registering the same metric name again replaces nothing (first one wins).
    """
    with _lock:
        if spec.name in _observables:
            return
        _observables[spec.name] = (spec, callback)
        if _current is not None:
            _current._create_observable(spec, callback)


@contextmanager
def use_providers(
    tracer_provider: TracerProvider, meter_provider: MeterProvider
) -> Iterator[Telemetry]:
    """Send modelwatch's telemetry to these providers inside the block (not re-entrant-safe
    across threads: meant for tests and for ``modelwatch.testing.capture``)."""
    global _override
    with _lock:
        previous = _override
        _override = (tracer_provider, meter_provider)
        invalidate()
        built = _rebuild()
    try:
        yield built
    finally:
        with _lock:
            _override = previous
            invalidate()
