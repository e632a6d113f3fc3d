"""Where modelwatch's tracer and instruments come from.

By default they come from the global OpenTelemetry providers (whatever the host or
:func:`modelwatch.configure` installed, or the API's no-op proxies). :func:`use_providers`
points modelwatch at other providers for a while (``modelwatch.testing.capture`` does this),
without touching the globals.

Instruments are created once per *meter provider* (never twice: the SDK would drop the second
holder's observable callbacks) from the specs in :mod:`modelwatch.semconv`, so every module
records with the same names, units and buckets. Observable instruments are declared once with
:func:`register_observable`; every meter provider's instruments observe all of them.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.trace import Tracer, TracerProvider

from modelwatch import semconv
from modelwatch._safety import report_internal_error
from modelwatch._version import __version__
from modelwatch.capture._bounded import OVERFLOW_KEY, BoundedTotals
from modelwatch.capture._deferred import DeferredRecords

try:  # the API's stand-in until a provider is installed (private: tolerate its absence)
    from opentelemetry.metrics import _internal as _metrics_api

    _PROXY_METER_PROVIDER: object | None = _metrics_api._PROXY_METER_PROVIDER
except (ImportError, AttributeError):  # pragma: no cover - another API version
    _PROXY_METER_PROVIDER = None

Attributes = Mapping[str, Any]
ObservableCallback = Callable[[], Iterable[tuple[float, Attributes]]]

_observables: dict[str, tuple[semconv.MetricSpec, ObservableCallback]] = {}
_lock = threading.RLock()


def allowed_metric_attributes(attributes: Attributes) -> dict[str, Any]:
    """Keep only the allow-listed, non-None attributes: nothing else may label a metric."""
    return {
        k: v
        for k, v in attributes.items()
        if k in semconv.METRIC_ATTRIBUTE_ALLOWLIST and v is not None
    }


class _Meters:
    """Everything modelwatch keeps per meter provider: instruments, cost totals, the queue of
    deferred histogram records, and one registration of every observable instrument.

    Exactly one exists per meter provider (see :func:`_meters_for`): the SDK keeps the first
    of two observable instruments of one name and drops the second one's callback, so a
    second holder for the same provider would never be observed (its cost would freeze and
    its deferred records would never be drained).
    """

    def __init__(self, meter_provider: MeterProvider) -> None:
        self.meter: Meter = meter_provider.get_meter(semconv.INSTRUMENTATION_SCOPE, __version__)
        self.instruments: dict[str, Any] = {}
        self.instrument_lock = threading.Lock()
        # ``modelwatch.cost`` is an observable counter over running totals kept here: adding to
        # a dict costs ~0.2 µs where ``Counter.add`` costs 7-12 µs. Bounded by attribute set.
        self.cost_totals: BoundedTotals[tuple[tuple[str, Any], ...]] = BoundedTotals(
            "cost", overflow=OVERFLOW_KEY
        )
        self.deferred = DeferredRecords(meter_provider)
        self.observed: set[str] = set()
        self.meter.create_observable_counter(
            semconv.COST.name,
            [self._observe_cost],
            unit=semconv.COST.unit,
            description=semconv.COST.description,
        )
        for spec, callback in list(_observables.values()):
            self.create_observable(spec, callback)

    def _observe_cost(self, _options: CallbackOptions) -> Iterator[Observation]:
        self.deferred.drain()  # first: the histograms are read after the observable callbacks
        return iter([Observation(total, dict(key)) for key, total in self.cost_totals.items()])

    def reset_after_fork(self) -> None:
        self.instrument_lock = threading.Lock()
        self.cost_totals.reset_after_fork()
        self.cost_totals.clear()  # the parent reports what it spent
        self.deferred.reset_after_fork()  # and records what it measured

    def instrument(self, spec: semconv.MetricSpec) -> Any:
        found = self.instruments.get(spec.name)
        if found is not None:
            return found
        with self.instrument_lock:
            found = self.instruments.get(spec.name)
            if found is None:
                found = self._create(spec)
                self.instruments[spec.name] = found
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

    def create_observable(self, spec: semconv.MetricSpec, callback: ObservableCallback) -> None:
        if spec.name in self.observed:
            return
        self.observed.add(spec.name)

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


#: The one :class:`_Meters` of each meter provider (weakly: a dropped provider's goes too).
_meters_by_provider: weakref.WeakKeyDictionary[Any, _Meters] = weakref.WeakKeyDictionary()


def _meters_for(meter_provider: MeterProvider) -> _Meters:
    """The :class:`_Meters` of ``meter_provider``, built on first use (lock held).

    A holder built on the API's proxy provider (a call before any provider was installed)
    has its instruments and observables forwarded to the provider installed later, so it is
    *that* provider's holder too: building a second one there would be dropped by the SDK.
    """
    try:
        found = _meters_by_provider.get(meter_provider)
    except TypeError:  # a provider that cannot be weakly referenced: keyed by identity
        return _unweakable_meters(meter_provider)
    if found is not None:
        return found
    proxy = _PROXY_METER_PROVIDER
    if proxy is not None and proxy is not meter_provider:
        via_proxy = _meters_by_provider.get(proxy)
        if via_proxy is not None and metrics.get_meter_provider() is meter_provider:
            via_proxy.deferred.retarget(meter_provider)
            _meters_by_provider[meter_provider] = via_proxy
            return via_proxy
    made = _Meters(meter_provider)
    _meters_by_provider[meter_provider] = made
    return made


_strong_meters: dict[int, tuple[Any, _Meters]] = {}


def _all_meters() -> list[_Meters]:
    found = {id(m): m for m in _meters_by_provider.values()}
    found.update({id(m): m for _, m in _strong_meters.values()})
    return list(found.values())


def _unweakable_meters(meter_provider: MeterProvider) -> _Meters:
    found = _strong_meters.get(id(meter_provider))
    if found is None or found[0] is not meter_provider:
        found = _strong_meters[id(meter_provider)] = (meter_provider, _Meters(meter_provider))
    return found[1]


class Telemetry:
    """A tracer and every modelwatch instrument, bound to one tracer and meter provider.

    Cheap to build: the meter side (instruments, cost totals, deferred records) is shared by
    every :class:`Telemetry` of one meter provider.
    """

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
        self.tracer: Tracer = tracer_provider.get_tracer(semconv.INSTRUMENTATION_SCOPE, __version__)
        with _lock:
            meters = _meters_for(meter_provider)
        self._meters = meters
        self.meter: Meter = meters.meter
        self.instrument: Callable[[semconv.MetricSpec], Any] = meters.instrument
        # the hot path's instruments and operations, bound once
        self.duration = meters.instrument(semconv.OPERATION_DURATION)
        self.tokens = meters.instrument(semconv.TOKEN_USAGE)
        self.time_to_first_chunk = meters.instrument(semconv.TIME_TO_FIRST_CHUNK)
        self.defer: Callable[..., None] = meters.deferred.defer
        self.defer_context: Callable[..., None] = meters.deferred.defer_context
        self.drain: Callable[[], None] = meters.deferred.drain
        self.add_cost: Callable[[tuple[tuple[str, Any], ...], float], None] = meters.cost_totals.add

    @property
    def defers(self) -> bool:
        """Whether histogram records wait for the next collection (SDK meter providers)."""
        return self._meters.deferred.defers

    @property
    def _deferred(self) -> Any:
        return self._meters.deferred.queue

    @property
    def _cost_totals(self) -> BoundedTotals[tuple[tuple[str, Any], ...]]:
        return self._meters.cost_totals


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
        if _current is not None:  # another thread built it while this one waited
            return _current
        if _override is not None:
            tp, mp = _override
        elif _configured is not None:
            tp, mp = _configured
        else:
            tp, mp = trace.get_tracer_provider(), metrics.get_meter_provider()
        _current = Telemetry(tp, mp)
        return _current


def invalidate() -> None:
    """Forget the cached tracer; the next call binds to the providers in use then (each meter
    provider keeps its one set of instruments)."""
    global _current
    with _lock:
        _current = None


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.RLock()
    for meters in _all_meters():
        meters.reset_after_fork()


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
    """Declare an observable instrument once; every meter provider's instruments observe it.

    ``callback`` returns ``(value, attributes)`` pairs; attributes are filtered by the
    allow-list. Registering the same metric name again replaces nothing (first one wins).
    """
    with _lock:
        if spec.name in _observables:
            return
        _observables[spec.name] = (spec, callback)
        for meters in _all_meters():
            meters.create_observable(spec, callback)


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
