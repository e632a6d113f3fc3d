"""Histogram records of the call path, deferred to collection time and replayed in bulk.

A monitored call appends ``(histogram, value, attributes, span context)`` to a queue
(~0.1 µs) instead of calling ``Histogram.record`` (~8 µs). The queue is drained at the start
of every collection (the cost counter's observable callback; the SDK runs observable
callbacks before it reads the synchronous instruments, so the values land in the same
collection), and in the background whenever :data:`DEFER_CAP` records are waiting, so a
sustained call rate never falls back to recording on the calling thread.

The drain is cheap too. Records are grouped by (histogram, attribute set); each group is
merged into the SDK's explicit-bucket aggregation of that attribute set directly (bucket
counts, sum, min, max: exactly what one ``record`` per value would add), with one real
``record`` per bucket for the last *sampled* value, carrying the call's span context, so
sampled calls leave exemplars linking a duration to its trace. Where the pipeline is not the
SDK's default one (another aggregation through a view, delta temporality, a proxy
instrument, an SDK whose internals differ), every value is recorded one by one instead: the
same data, at the usual price.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Mapping
from functools import partial
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext

from modelwatch._safety import report_internal_error

try:  # the SDK's aggregation internals, for the bulk merge (optional: values replay otherwise)
    from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
    from opentelemetry.sdk.metrics._internal.aggregation import (
        _ExplicitBucketHistogramAggregation,
    )

    _MERGE = True
except ImportError:  # pragma: no cover - another SDK version
    _MERGE = False

#: Queued records that start a background drain.
DEFER_CAP = 16_384
#: Beyond ``DEFER_CAP * HARD_CAP_FACTOR`` queued records (a drain that cannot keep up),
#: records happen on the spot: memory stays bounded (~100 bytes a record; ~180 when every
#: record has its own attribute dict: ≤ 6 MiB).
HARD_CAP_FACTOR: Final = 2

Record = tuple[Any, float, Mapping[str, Any], SpanContext | None]


def _is_sdk(meter_provider: object) -> bool:
    """Whether records are worth deferring: an SDK provider, or the API's proxy (nothing is
    installed yet: the records wait, and reach the provider installed later when it drains)."""
    kind = type(meter_provider)
    return kind.__module__.startswith("opentelemetry.sdk") or kind.__name__ == "_ProxyMeterProvider"


def record_now(
    histogram: Any, value: float, attributes: Mapping[str, Any], context: SpanContext | None
) -> None:
    """``histogram.record`` with the call's span as context when it was sampled (exemplars)."""
    if context is not None and context.trace_flags.sampled:
        histogram.record(
            value, attributes, context=trace.set_span_in_context(NonRecordingSpan(context))
        )
    else:
        histogram.record(value, attributes)


class DeferredRecords:
    """The deferred-record queue of one meter provider."""

    def __init__(self, meter_provider: object) -> None:
        self.queue: deque[Record] = deque()
        #: Only with an SDK meter provider (or the proxy standing for one): without one nothing
        #: collects, and a no-op record costs nothing anyway.
        self.defers = _is_sdk(meter_provider)
        self._drain_lock = threading.Lock()
        self._draining = False
        self.drainer: threading.Thread | None = None

    def retarget(self, meter_provider: object) -> None:
        """The instruments now forward to ``meter_provider`` (a proxy provider was set)."""
        self.defers = _is_sdk(meter_provider)

    def defer(
        self,
        histogram: Any,
        value: float,
        attributes: Mapping[str, Any],
        span: Span | None = None,
    ) -> None:
        """Record ``value`` into ``histogram`` at the next drain (``span``: the call's span,
        whose context the record carries so a sampled call leaves an exemplar)."""
        self.defer_context(
            histogram, value, attributes, span.get_span_context() if span is not None else None
        )

    def defer_context(
        self,
        histogram: Any,
        value: float,
        attributes: Mapping[str, Any],
        context: SpanContext | None,
    ) -> None:
        """:meth:`defer` with the span's context already read (a call's records share it)."""
        queue = self.queue
        if self.defers:
            queued = len(queue)
            if queued < DEFER_CAP:
                queue.append((histogram, value, attributes, context))
                return
            if queued < DEFER_CAP * HARD_CAP_FACTOR:
                queue.append((histogram, value, attributes, context))
                self._start_drainer()
                return
        record_now(histogram, value, attributes, context)

    def _start_drainer(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            drainer = threading.Thread(
                target=self._drain_in_background, name="modelwatch-drain", daemon=True
            )
            drainer.start()
            self.drainer = drainer
        except Exception as exc:  # e.g. at interpreter shutdown: the next collection drains
            self._draining = False
            report_internal_error("deferred_drainer", exc)

    def _drain_in_background(self) -> None:
        try:
            self.drain()
        finally:
            self._draining = False

    def drain(self) -> None:
        """Replay every queued record into its histogram now; never raises."""
        with self._drain_lock:
            queue = self.queue
            pop = queue.popleft
            batch: list[Record] = []
            try:
                for _ in range(len(queue)):  # what is queued now: appends go on meanwhile
                    batch.append(pop())
            except IndexError:
                pass
            if batch:
                try:
                    replay(batch)
                except Exception as exc:
                    report_internal_error("deferred_record", exc)

    def reset_after_fork(self) -> None:
        """A forked child drops the parent's queue (the parent records what it measured)."""
        self.queue.clear()
        self._drain_lock = threading.Lock()
        self._draining = False
        self.drainer = None


class _Group:
    __slots__ = ("attributes", "contexts", "histogram", "values")

    def __init__(self, histogram: Any, attributes: Mapping[str, Any]) -> None:
        self.histogram = histogram
        self.attributes = attributes
        self.values: list[float] = []
        self.contexts: list[SpanContext | None] = []


def replay(batch: list[Record]) -> None:
    """Record every ``(histogram, value, attributes, context)`` of ``batch``."""
    groups: dict[tuple[int, Any, Any], _Group] = {}
    by_identity: dict[tuple[int, int], _Group] = {}  # most calls share one attributes dict
    for histogram, value, attributes, context in batch:
        group = by_identity.get((id(histogram), id(attributes)))
        if group is None:
            key: tuple[Any, ...]
            try:
                key = (id(histogram), tuple(attributes), tuple(attributes.values()))
                hash(key)
            except TypeError:  # an unhashable attribute value: on its own
                key = (id(histogram), "unhashable", id(attributes))
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(histogram, attributes)
            by_identity[(id(histogram), id(attributes))] = group
        group.values.append(value)
        group.contexts.append(context)
    for group in groups.values():
        try:
            _replay_group(group)
        except Exception as exc:
            report_internal_error("deferred_record", exc)


#: How many of a group's latest records are searched for exemplars (the SDK's reservoir keeps
#: the latest sampled value per bucket; older buckets' exemplars are samples too).
EXEMPLAR_SCAN: Final = 256


def _replay_group(group: _Group) -> None:
    attributes = group.attributes
    # a proxy instrument (made before a provider was installed) forwards to its real one
    histogram = getattr(group.histogram, "_real_instrument", None) or group.histogram
    values, contexts = group.values, group.contexts
    # the last value for real: it creates the attribute set's aggregation if need be
    record_now(histogram, values[-1], attributes, contexts[-1])
    del values[-1], contexts[-1]
    if not values:
        return
    targets = _aggregations(histogram, attributes) if _MERGE else None
    low, high = min(values), max(values)
    if targets is None or not (low >= 0 and high < math.inf):  # (the SDK's own value checks)
        for value, context in zip(values, contexts, strict=True):
            record_now(histogram, value, attributes, context)
        return
    bounds = targets[0][1]._boundaries
    counts = [0] * (len(bounds) + 1)
    for index, count in Counter(map(partial(bisect_left, bounds), values)).items():
        counts[index] = count
    total = math.fsum(values)
    # the latest sampled value of each bucket is recorded for real, so it leaves the exemplar
    # the SDK's bucket-aligned reservoir keeps; the others are merged
    exemplars: dict[int, int] = {}
    for i in range(len(values) - 1, max(-1, len(values) - 1 - EXEMPLAR_SCAN), -1):
        context = contexts[i]
        if context is not None and context.trace_flags.sampled:
            exemplars.setdefault(bisect_left(bounds, values[i]), i)
    for bucket, i in exemplars.items():
        counts[bucket] -= 1
        total -= values[i]
        record_now(histogram, values[i], attributes, contexts[i])
    if not any(counts):
        return
    for vim, aggregation in targets:
        with vim._lock, aggregation._lock:
            if aggregation._value is None:
                aggregation._value = aggregation._get_empty_bucket_counts()
            bucket_counts = aggregation._value
            for index, count in enumerate(counts):
                if count:
                    bucket_counts[index] += count
            aggregation._sum += total
            if aggregation._record_min_max:
                aggregation._min = min(aggregation._min, low)
                aggregation._max = max(aggregation._max, high)


def _aggregations(histogram: Any, attributes: Mapping[str, Any]) -> list[tuple[Any, Any]] | None:
    """The SDK aggregations one ``histogram.record(v, attributes)`` would update (one per
    reader and view), if all are explicit-bucket histograms with one set of boundaries on a
    cumulative stream; ``None`` otherwise (the caller then records value by value)."""
    consumer = getattr(histogram, "_measurement_consumer", None)
    storages = getattr(consumer, "_reader_storages", None)
    if storages is None:
        return None
    found: list[tuple[Any, Any]] = []
    for storage in list(storages.values()):
        matches = storage._instrument_view_instrument_matches.get(histogram)
        if matches is None:
            return None
        for vim in matches:
            if vim._reset_on_collect:  # delta: collections drop aggregations; no merging
                return None
            keys = vim._view._attribute_keys
            kept = dict(attributes)
            if keys is not None:
                kept = {k: v for k, v in kept.items() if k in keys}
            aggregation = vim._attributes_aggregation.get(_hash_attributes(kept))
            if type(aggregation) is not _ExplicitBucketHistogramAggregation:
                return None  # another aggregation, or folded into the SDK's overflow set
            found.append((vim, aggregation))
    if not found or len({agg._boundaries for _, agg in found}) != 1:
        return None
    return found
