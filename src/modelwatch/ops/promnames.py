"""The OpenTelemetry -> Prometheus naming presets of modelwatch's pipelines.

The translation itself is :func:`modelwatch.semconv.prometheus_metric_name` (one for the whole
library); this module names the presets the rules and dashboards are generated for.

The same OpenTelemetry metric reaches Prometheus under different names depending on the
path it takes. The rules and dashboards are written against one :class:`Naming`, chosen to
match the user's pipeline:

- :data:`SDK` (default): ``opentelemetry-exporter-prometheus`` in the process (what
  ``modelwatch.configure(prometheus_port=...)`` serves). Unit ``s`` adds ``_seconds``,
  counters add ``_total``, units ``1`` and ``{...}`` add nothing (``usd`` adds ``_usd``).
- :data:`COLLECTOR`: the OpenTelemetry Collector's Prometheus exporter or Prometheus' own
  OTLP receiver with suffixes on: as :data:`SDK`, plus ``_ratio`` on unit-``1`` gauges.
- :data:`PLAIN`: suffixes turned off (``add_metric_suffixes: false`` in the Collector,
  ``translation_strategy: ...WithoutSuffixes`` in Prometheus): no unit and no ``_total``.

Histograms always expose ``_bucket``, ``_sum`` and ``_count`` series on top of the name.
Attribute keys become label names with every character outside ``[a-zA-Z0-9_]`` turned
into ``_`` (``gen_ai.request.model`` -> ``gen_ai_request_model``).

>>> from modelwatch import semconv
>>> metric_name(semconv.OPERATION_DURATION)
'gen_ai_client_operation_duration_seconds'
>>> metric_name(semconv.COST)
'modelwatch_cost_usd_total'
>>> metric_name(semconv.COST, PLAIN)
'modelwatch_cost'
>>> label_name(semconv.GEN_AI_REQUEST_MODEL)
'gen_ai_request_model'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from modelwatch import semconv
from modelwatch.semconv import MetricSpec

__all__ = ["COLLECTOR", "NAMINGS", "PLAIN", "SDK", "Naming", "label_name", "metric_name"]


@dataclass(frozen=True)
class Naming:
    """How metric names were translated on the way into Prometheus.

    Attributes:
        name: a short name for the CLI (``--names``).
        unit_suffixes: append the unit as a word (``_seconds``).
        total_suffix: append ``_total`` to counters.
        ratio_suffix: append ``_ratio`` to gauges whose unit is ``1`` (the Collector does).
    """

    name: str
    unit_suffixes: bool = True
    total_suffix: bool = True
    ratio_suffix: bool = False


SDK: Final = Naming("sdk")
COLLECTOR: Final = Naming("collector", ratio_suffix=True)
PLAIN: Final = Naming("plain", unit_suffixes=False, total_suffix=False)
#: Every preset, by its CLI name.
NAMINGS: Final[dict[str, Naming]] = {n.name: n for n in (SDK, COLLECTOR, PLAIN)}


def metric_name(spec: MetricSpec, naming: Naming = SDK) -> str:
    """The Prometheus metric name of ``spec`` under ``naming`` (no ``_bucket``-style suffix):
    :func:`modelwatch.semconv.prometheus_metric_name` with the naming's suffix rules."""
    return semconv.prometheus_metric_name(
        spec,
        unit_suffixes=naming.unit_suffixes,
        total_suffix=naming.total_suffix,
        ratio_suffix=naming.ratio_suffix,
    )


def label_name(attribute_key: str) -> str:
    """The Prometheus label name of an OpenTelemetry attribute key."""
    return semconv.prometheus_label_name(attribute_key)


class PromNames:
    """Every metric and label name the rules and dashboards query, for one naming.

    One table, so the alert rules and the dashboards can never spell a name differently.
    """

    def __init__(self, naming: Naming = SDK) -> None:
        self.model = label_name(semconv.GEN_AI_REQUEST_MODEL)
        self.analysis = label_name(semconv.MODELWATCH_ANALYSIS)
        self.error = label_name(semconv.ERROR_TYPE)
        self.token_type = label_name(semconv.GEN_AI_TOKEN_TYPE)
        self.router = label_name(semconv.MODELWATCH_ROUTER)
        self.tier = label_name(semconv.MODELWATCH_TIER)
        self.circuit = label_name(semconv.MODELWATCH_CIRCUIT)
        self.check = label_name(semconv.HEALTH_CHECK)
        self.kind = label_name(semconv.HEALTH_KIND)
        self.budget = label_name(semconv.BUDGET)
        self.resource = label_name(semconv.RATE_LIMIT_RESOURCE)
        self.from_ = label_name(semconv.FROM)
        self.to = label_name(semconv.TO)
        self.reason = label_name(semconv.REASON)
        self.origin = label_name(semconv.MODELWATCH_ORIGIN)
        #: the process a series came from: Prometheus' scrape target label (the Collector's
        #: exporter fills it from ``service.instance.id``). Rules and panels aggregate it away,
        #: except the per-instance views: which worker is hung, which one is not ready.
        self.instance = "instance"
        self.duration = metric_name(semconv.OPERATION_DURATION, naming)
        self.duration_count = f"{self.duration}_count"
        self.duration_bucket = f"{self.duration}_bucket"
        self.tokens = metric_name(semconv.TOKEN_USAGE, naming)
        self.ttfc = metric_name(semconv.TIME_TO_FIRST_CHUNK, naming)
        self.cost = metric_name(semconv.COST, naming)
        self.in_flight = metric_name(semconv.CALLS_IN_FLIGHT, naming)
        self.oldest = metric_name(semconv.CALLS_OLDEST_IN_FLIGHT, naming)
        self.state = metric_name(semconv.CIRCUIT_STATE, naming)
        self.transitions = metric_name(semconv.CIRCUIT_TRANSITIONS, naming)
        self.failovers = metric_name(semconv.FAILOVERS, naming)
        self.failover_duration = metric_name(semconv.FAILOVER_DURATION, naming)
        self.health = metric_name(semconv.HEALTH_STATUS, naming)
        self.ready = metric_name(semconv.HEALTH_READY, naming)
        self.remaining = metric_name(semconv.RATE_LIMIT_REMAINING, naming)
        self.budget_used = metric_name(semconv.BUDGET_USED, naming)
        self.process_memory = metric_name(semconv.PROCESS_MEMORY_USAGE, naming)
        self.process_cpu = metric_name(semconv.PROCESS_CPU_TIME, naming)
        self.system_cpu = metric_name(semconv.SYSTEM_CPU_UTILIZATION, naming)
        self.system_memory = metric_name(semconv.SYSTEM_MEMORY_UTILIZATION, naming)
        self.network_io = metric_name(semconv.SYSTEM_NETWORK_IO, naming)
        self.disk_io = metric_name(semconv.SYSTEM_DISK_IO, naming)
