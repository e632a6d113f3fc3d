"""A metric's declaration (:class:`MetricSpec`) and the one OpenTelemetry -> Prometheus name
translation. :mod:`modelwatch.semconv` declares every metric with it and re-exports both; this
module holds no names of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["InstrumentKind", "MetricSpec", "prometheus_label_name", "prometheus_metric_name"]

InstrumentKind = Literal[
    "histogram",
    "counter",
    "up_down_counter",
    "observable_counter",
    "observable_gauge",
    "observable_up_down_counter",
]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its OpenTelemetry name, instrument, unit, buckets and attribute keys."""

    name: str
    instrument: InstrumentKind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None

    @property
    def prometheus_name(self) -> str:
        """The name Prometheus shows after OpenTelemetry's translation, as the in-process
        exporter writes it (:func:`prometheus_metric_name` with its defaults).

        Histograms get ``_bucket``/``_sum``/``_count`` on top; counters end in ``_total``.
        """
        return prometheus_metric_name(self)


#: Unit suffixes as the OpenTelemetry specification's Prometheus compatibility rules spell them.
_UNIT_WORDS: Final[dict[str, str]] = {
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "min": "minutes",
    "h": "hours",
    "d": "days",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "%": "percent",
}
_INVALID_NAME_CHARS: Final = re.compile(r"[^a-zA-Z0-9_]")
_REPEATED_UNDERSCORES: Final = re.compile(r"__+")


def prometheus_label_name(key: str) -> str:
    """A metric or attribute name as Prometheus spells it: every character outside
    ``[a-zA-Z0-9_]`` becomes ``_`` (``gen_ai.request.model`` -> ``gen_ai_request_model``)."""
    return _REPEATED_UNDERSCORES.sub("_", _INVALID_NAME_CHARS.sub("_", key))


def _unit_word(unit: str) -> str:
    if not unit or unit.startswith("{"):
        return ""  # annotations such as {token} carry no unit
    if "/" in unit:
        numerator, denominator = unit.split("/", 1)
        first = _UNIT_WORDS.get(numerator, numerator)
        return f"{first}_per_{_UNIT_WORDS.get(denominator, denominator)}"
    return _UNIT_WORDS.get(unit, unit)


def prometheus_metric_name(
    spec: MetricSpec,
    *,
    unit_suffixes: bool = True,
    total_suffix: bool = True,
    ratio_suffix: bool = False,
) -> str:
    """The one OpenTelemetry -> Prometheus metric name translation (no ``_bucket``-style
    suffix): dots to underscores; the unit as a word (``s`` -> ``_seconds``; ``{...}``
    annotations add nothing) unless ``unit_suffixes`` is off; ``_ratio`` on unit-``1`` gauges
    when ``ratio_suffix`` (the Collector's exporter adds it); ``_total`` on counters unless
    ``total_suffix`` is off. :mod:`modelwatch.ops.promnames` names the pipelines' presets.
    """
    base = prometheus_label_name(spec.name)
    if unit_suffixes:
        if spec.unit == "1":
            if ratio_suffix and spec.instrument == "observable_gauge":
                base += "_ratio"
        else:
            word = prometheus_label_name(_unit_word(spec.unit))
            if word and not base.endswith(f"_{word}"):
                base += f"_{word}"
    if total_suffix and spec.instrument in ("counter", "observable_counter"):
        base += "_total"
    return base
