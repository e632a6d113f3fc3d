"""Every telemetry name modelwatch emits: spans, metrics, attributes, units and buckets.

Names are public API. Code, ``docs/telemetry.md``, the generated Prometheus rules and the
Grafana dashboards all read this module, so they cannot drift apart. Tests pin every value.

The GenAI names follow the OpenTelemetry GenAI semantic conventions; ``modelwatch.*`` names
are this library's own.
"""

from __future__ import annotations

from typing import Final

# re-exported (the "X as X" form, so type checkers see them as semconv's): the metric
# declaration and the one OTel -> Prometheus name translation
from modelwatch._metricspec import InstrumentKind as InstrumentKind  # noqa: PLC0414
from modelwatch._metricspec import MetricSpec as MetricSpec  # noqa: PLC0414
from modelwatch._metricspec import prometheus_label_name as prometheus_label_name  # noqa: PLC0414
from modelwatch._metricspec import prometheus_metric_name as prometheus_metric_name  # noqa: PLC0414

# --------------------------------------------------------------------------- attributes
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"  # noqa: S105 - an attribute name
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
# request settings (span only)
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
# response details and detailed usage (span only)
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"

MODELWATCH_ANALYSIS: Final = "modelwatch.analysis"
#: the client's task when it is not a GenAI operation (Hugging Face ``summarization``...)
MODELWATCH_TASK: Final = "modelwatch.task"
MODELWATCH_ROUTER: Final = "modelwatch.router"
#: the SLO tier of a call (``monitored(tier=...)``, ``Router(tier=...)``): one of
#: :data:`SLO_TIERS`, so the label stays bounded; absent on calls without a tier
MODELWATCH_TIER: Final = "modelwatch.tier"
#: The declared SLO tiers, most demanding first: the only values ``modelwatch.tier`` takes.
#: Each has its own availability target in the generated burn-rate rules
#: (``RuleOptions.slo_tiers``).
SLO_TIERS: Final[tuple[str, ...]] = ("critical", "standard", "batch")
MODELWATCH_ATTEMPT: Final = "modelwatch.attempt"
MODELWATCH_COST: Final = "modelwatch.cost"
MODELWATCH_STREAM: Final = "modelwatch.stream"
MODELWATCH_BACKEND: Final = "modelwatch.backend"
MODELWATCH_CIRCUIT: Final = "modelwatch.circuit"
#: ``"probe"`` on calls made by health checks and breaker probes, absent on users' calls:
#: availability SLOs count users' calls only.
MODELWATCH_ORIGIN: Final = "modelwatch.origin"
ORIGIN_PROBE: Final = "probe"
#: span events only (router): seconds until a refusing backend takes calls again
MODELWATCH_RETRY_AFTER: Final = "modelwatch.retry_after_s"
#: span events only (router): how long the router waits before retrying a backend
MODELWATCH_WAIT: Final = "modelwatch.wait_s"
#: hedged requests: how a hedge ended (``modelwatch.hedges``), and the delay it waited
HEDGE_OUTCOME: Final = "modelwatch.hedge.outcome"
HEDGE_WON: Final = "won"
HEDGE_LOST: Final = "lost"
HEDGE_CANCELLED: Final = "cancelled"
HEDGE_OUTCOMES: Final = (HEDGE_WON, HEDGE_LOST, HEDGE_CANCELLED)
MODELWATCH_HEDGE: Final = "modelwatch.hedge"

# attribute keys that only the resilience and health metrics carry
FROM: Final = "from"
TO: Final = "to"
REASON: Final = "reason"
HEALTH_CHECK: Final = "modelwatch.health.check"
HEALTH_KIND: Final = "modelwatch.health.kind"
#: the root cause of a check's trouble: the deepest dependency that is down (docs/health.md,
#: *Dependencies and cascades*)
HEALTH_CAUSE: Final = "modelwatch.health.cause"
RATE_LIMIT_RESOURCE: Final = "modelwatch.rate_limit.resource"
BUDGET: Final = "modelwatch.budget"
TASK_NAME: Final = "modelwatch.task.name"
TASK_OUTCOME: Final = "modelwatch.task.outcome"
# model regressions (quality, outcomes, drift, anomalies, canary versions)
QUALITY_METRIC: Final = "modelwatch.quality.metric"
OUTCOME: Final = "modelwatch.outcome"
LABEL: Final = "modelwatch.label"
DRIFT: Final = "modelwatch.drift"
FEATURE: Final = "modelwatch.feature"
ANOMALY_SIGNAL: Final = "modelwatch.anomaly.signal"
#: the version of a backend (``Backend(version=...)``): canary events and metrics
MODELWATCH_VERSION: Final = "modelwatch.version"
_REGRESSION_KEYS: Final = (
    QUALITY_METRIC, OUTCOME, LABEL, DRIFT, FEATURE, ANOMALY_SIGNAL, MODELWATCH_VERSION
)  # fmt: skip
#: on the one attribute set that new attribute sets fold into past a registry's bound
OTEL_METRIC_OVERFLOW: Final = "otel.metric.overflow"
#: ``modelwatch.outcome`` values: the confusion-matrix cell of one label
OUTCOMES: Final = ("tp", "fp", "fn", "tn")
#: ``modelwatch.anomaly.signal`` values
ANOMALY_SIGNALS: Final = ("latency", "error_rate")
#: the label a predicted or actual value outside the declared labels is counted under
LABEL_OTHER: Final = "_OTHER"

TOKEN_TYPE_INPUT: Final = "input"  # noqa: S105
TOKEN_TYPE_OUTPUT: Final = "output"  # noqa: S105

#: The only attribute keys ever put on a metric point. Anything else is dropped, so a
#: prompt, a user id or free text can never become a time-series label.
METRIC_ATTRIBUTE_ALLOWLIST: Final[frozenset[str]] = frozenset(
    {
        GEN_AI_OPERATION_NAME,
        GEN_AI_PROVIDER_NAME,
        GEN_AI_REQUEST_MODEL,
        GEN_AI_RESPONSE_MODEL,
        GEN_AI_TOKEN_TYPE,
        GEN_AI_AGENT_NAME,
        GEN_AI_TOOL_NAME,
        ERROR_TYPE,
        SERVER_ADDRESS,
        SERVER_PORT,
        MODELWATCH_ANALYSIS,
        MODELWATCH_TASK,
        MODELWATCH_ROUTER,
        MODELWATCH_TIER,
        MODELWATCH_BACKEND,
        MODELWATCH_CIRCUIT,
        MODELWATCH_ORIGIN,
        FROM,
        TO,
        REASON,
        HEALTH_CHECK,
        HEALTH_KIND,
        HEALTH_CAUSE,
        RATE_LIMIT_RESOURCE,
        BUDGET,
        HEDGE_OUTCOME,
        TASK_NAME,
        TASK_OUTCOME,
        *_REGRESSION_KEYS,
        OTEL_METRIC_OVERFLOW,
    }
)

# --------------------------------------------------------------------------- spans
OPERATION_CHAT: Final = "chat"
OPERATION_TEXT_COMPLETION: Final = "text_completion"
OPERATION_GENERATE_CONTENT: Final = "generate_content"
OPERATION_EMBEDDINGS: Final = "embeddings"
OPERATION_INVOKE_AGENT: Final = "invoke_agent"
OPERATION_EXECUTE_TOOL: Final = "execute_tool"

#: Task names clients (and older modelwatch docs) used as operations -> the spec operation.
#: ``monitored(operation="summarization")`` records ``text_completion`` with
#: ``modelwatch.task="summarization"``.
TASK_OPERATIONS: Final[dict[str, str]] = {
    "text_generation": OPERATION_TEXT_COMPLETION,
    "text_to_text": OPERATION_TEXT_COMPLETION,
    "summarization": OPERATION_TEXT_COMPLETION,
    "translation": OPERATION_TEXT_COMPLETION,
}

SPAN_ROUTE_PREFIX: Final = "route"
"""Router spans are named ``"route {router}"``."""

# Celery task spans (messaging conventions): "send {task}" PRODUCER, "process {task}" CONSUMER
SPAN_TASK_SEND: Final = "send"
SPAN_TASK_PROCESS: Final = "process"
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DESTINATION: Final = "messaging.destination.name"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
TASK_RETRIES: Final = "modelwatch.task.retries"
TASK_OUTCOMES: Final = ("success", "failure", "retry", "revoked")

# span event names (router and breaker decisions)
EVENT_FAILOVER: Final = "modelwatch.failover"
EVENT_RETRY: Final = "modelwatch.retry"
EVENT_REJECTED: Final = "modelwatch.circuit.rejected"
EVENT_STATE_CHANGE: Final = "modelwatch.circuit.state_change"
EVENT_FIRST_CHUNK: Final = "gen_ai.first_chunk"
#: the GenAI conventions' event carrying captured content (EVENT_ONLY / SPAN_AND_EVENT)
EVENT_INFERENCE_DETAILS: Final = "gen_ai.client.inference.operation.details"
EVENT_CANARY_ROLLBACK: Final = "modelwatch.canary.rollback"
EVENT_CANARY_PROMOTE: Final = "modelwatch.canary.promote"
EVENT_HEDGE: Final = "modelwatch.hedge"


def model_span_name(operation: str, model: str) -> str:
    """Name of a model-call span: ``"{gen_ai.operation.name} {gen_ai.request.model}"``."""
    return f"{operation} {model}"


def agent_span_name(kind: str, name: str) -> str:
    """Name of an agent (``invoke_agent``) or tool (``execute_tool``) step span."""
    return f"{OPERATION_INVOKE_AGENT if kind == 'agent' else OPERATION_EXECUTE_TOOL} {name}"


def route_span_name(router: str) -> str:
    """Name of a router span: ``"route {router}"``."""
    return f"{SPAN_ROUTE_PREFIX} {router}"


# --------------------------------------------------------------------------- buckets
#: 0.01 s doubling up to 81.92 s: sub-second detail and room for the 30 s alert threshold.
DURATION_BUCKETS: Final[tuple[float, ...]] = tuple(round(0.01 * 2**i, 2) for i in range(14))
#: 1, 4, 16 ... 67108864 tokens (powers of four).
TOKEN_BUCKETS: Final[tuple[float, ...]] = tuple(float(4**i) for i in range(14))

# --------------------------------------------------------------------------- metrics
_MODEL_KEYS: Final = (
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    SERVER_ADDRESS,
    SERVER_PORT,
    MODELWATCH_ANALYSIS,
    MODELWATCH_TASK,
    MODELWATCH_ROUTER,
    MODELWATCH_TIER,
)

OPERATION_DURATION: Final = MetricSpec(
    "gen_ai.client.operation.duration",
    "histogram",
    "s",
    "Duration of GenAI client operations (model calls), successful or not.",
    (*_MODEL_KEYS, ERROR_TYPE, MODELWATCH_ORIGIN),
    DURATION_BUCKETS,
)
TOKEN_USAGE: Final = MetricSpec(
    "gen_ai.client.token.usage",
    "histogram",
    "{token}",
    "Tokens used per model call, by gen_ai.token.type (input or output).",
    (*_MODEL_KEYS, GEN_AI_TOKEN_TYPE, ERROR_TYPE, MODELWATCH_ORIGIN),
    TOKEN_BUCKETS,
)
TIME_TO_FIRST_CHUNK: Final = MetricSpec(
    "gen_ai.client.operation.time_to_first_chunk",
    "histogram",
    "s",
    "Time from the start of a streaming call to its first chunk.",
    _MODEL_KEYS,
    DURATION_BUCKETS,
)
TIME_PER_OUTPUT_CHUNK: Final = MetricSpec(
    "gen_ai.client.operation.time_per_output_chunk",
    "histogram",
    "s",
    "Time between consecutive chunks of a streaming call, after the first one.",
    _MODEL_KEYS,
    DURATION_BUCKETS,
)
INVOKE_AGENT_DURATION: Final = MetricSpec(
    "gen_ai.invoke_agent.duration",
    "histogram",
    "s",
    "Duration of agent steps.",
    (GEN_AI_OPERATION_NAME, GEN_AI_AGENT_NAME, ERROR_TYPE),
    DURATION_BUCKETS,
)
EXECUTE_TOOL_DURATION: Final = MetricSpec(
    "gen_ai.execute_tool.duration",
    "histogram",
    "s",
    "Duration of tool steps.",
    (GEN_AI_OPERATION_NAME, GEN_AI_TOOL_NAME, ERROR_TYPE),
    DURATION_BUCKETS,
)
#: unit ``usd``: exposed as ``modelwatch_cost_usd_total`` (``{USD}`` would add no unit at all,
#: ``USD`` an upper-case ``_USD_total``)
COST: Final = MetricSpec(
    "modelwatch.cost",
    "observable_counter",
    "usd",
    "Cost of model calls in US dollars, from the price table.",
    (GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL, MODELWATCH_ANALYSIS, MODELWATCH_ROUTER),
)
CALLS_IN_FLIGHT: Final = MetricSpec(
    "modelwatch.calls.in_flight",
    "observable_up_down_counter",
    "{call}",
    "Model calls currently running.",
    (GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL, MODELWATCH_ANALYSIS),
)
CALLS_OLDEST_IN_FLIGHT: Final = MetricSpec(
    "modelwatch.calls.oldest_in_flight",
    "observable_gauge",
    "s",
    "Age of the oldest running model call: a hung call shows here before it finishes.",
    (GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL, MODELWATCH_ANALYSIS),
)
CIRCUIT_STATE: Final = MetricSpec(
    "modelwatch.circuit.state",
    "observable_gauge",
    "{state}",
    "Circuit breaker state per backend: 0 closed, 1 half-open, 2 open.",
    (MODELWATCH_CIRCUIT, MODELWATCH_ROUTER, GEN_AI_REQUEST_MODEL),
)
CIRCUIT_TRANSITIONS: Final = MetricSpec(
    "modelwatch.circuit.transitions",
    "counter",
    "{transition}",
    "Circuit breaker state changes.",
    (MODELWATCH_CIRCUIT, MODELWATCH_ROUTER, GEN_AI_REQUEST_MODEL, FROM, TO, REASON),
)
FAILOVERS: Final = MetricSpec(
    "modelwatch.failovers",
    "counter",
    "{failover}",
    "Calls that moved from one backend to the next.",
    (MODELWATCH_ROUTER, FROM, TO, REASON, MODELWATCH_TIER),
)
FAILOVER_DURATION: Final = MetricSpec(
    "modelwatch.failover.duration",
    "histogram",
    "s",
    "Extra time a call spent because it failed over.",
    (MODELWATCH_ROUTER, FROM, TO, REASON),
    DURATION_BUCKETS,
)
HEDGES: Final = MetricSpec(
    "modelwatch.hedges",
    "counter",
    "{hedge}",
    "Hedged attempts, by how they ended: won, lost (failed) or cancelled (another answered first).",
    (MODELWATCH_ROUTER, HEDGE_OUTCOME),
)
HEALTH_STATUS: Final = MetricSpec(
    "modelwatch.health.status",
    "observable_gauge",
    "1",
    "Health check status: 1 ok, 0.5 degraded, 0 down.",
    (HEALTH_CHECK, HEALTH_KIND, HEALTH_CAUSE),
)
HEALTH_READY: Final = MetricSpec(
    "modelwatch.health.ready",
    "observable_gauge",
    "1",
    "Readiness as /ready answers it: 1 ready, 0 while a critical check is down.",
    (),
)
HEALTH_CHECK_DURATION: Final = MetricSpec(
    "modelwatch.health.check.duration",
    "histogram",
    "s",
    "Duration of health probes.",
    (HEALTH_CHECK, HEALTH_KIND, ERROR_TYPE),
    DURATION_BUCKETS,
)
RATE_LIMIT_REMAINING: Final = MetricSpec(
    "modelwatch.rate_limit.remaining",
    "observable_gauge",
    "1",
    "Remaining share of the provider's rate limit (remaining / limit), from response headers.",
    (MODELWATCH_ROUTER, GEN_AI_REQUEST_MODEL, RATE_LIMIT_RESOURCE),
)
BUDGET_USED: Final = MetricSpec(
    "modelwatch.budget.used",
    "observable_gauge",
    "1",
    "Share of a cost budget spent in its period (spent / limit).",
    (BUDGET,),
)
TASK_DURATION: Final = MetricSpec(
    "modelwatch.task.duration",
    "histogram",
    "s",
    "Duration of Celery tasks on the worker.",
    (TASK_NAME, TASK_OUTCOME),
    DURATION_BUCKETS,
)
TASK_QUEUE_WAIT: Final = MetricSpec(
    "modelwatch.task.queue_wait",
    "histogram",
    "s",
    "Time from a Celery task's publication to the start of its run.",
    (TASK_NAME,),
    DURATION_BUCKETS,
)

#: 0.05 steps up to 1: quality scores are 0..1, and the alert thresholds sit on bucket bounds.
QUALITY_BUCKETS: Final[tuple[float, ...]] = tuple(round(0.05 * i, 2) for i in range(1, 21))
_QUALITY_KEYS: Final = (GEN_AI_REQUEST_MODEL, MODELWATCH_ANALYSIS)
QUALITY_SCORE: Final = MetricSpec(
    "modelwatch.quality.score", "histogram", "1",
    "Quality scores of model answers (0..1: evaluator scores, user ratings), per metric.",
    (*_QUALITY_KEYS, QUALITY_METRIC),
    QUALITY_BUCKETS,
)  # fmt: skip
QUALITY_OUTCOMES: Final = MetricSpec(
    "modelwatch.quality.outcomes", "counter", "{outcome}",
    "Labelled feedback per declared label: modelwatch.outcome is tp, fp, fn or tn.",
    (*_QUALITY_KEYS, LABEL, OUTCOME),
)  # fmt: skip
DRIFT_SCORE: Final = MetricSpec(
    "modelwatch.drift.score", "observable_gauge", "1",
    "Population stability index of the recent window against the reference, per feature.",
    (DRIFT, GEN_AI_REQUEST_MODEL, FEATURE),
)  # fmt: skip
ANOMALY_SCORE: Final = MetricSpec(
    "modelwatch.anomaly.score", "observable_gauge", "1",
    "Robust z-score of latency or error rate against the learned (hour-of-day) baseline.",
    (*_QUALITY_KEYS, ANOMALY_SIGNAL),
)  # fmt: skip
CANARY_WEIGHT: Final = MetricSpec(
    "modelwatch.canary.weight", "observable_gauge", "1",
    "Traffic share of a candidate version (0 once rolled back, 1 once promoted).",
    (MODELWATCH_ROUTER, MODELWATCH_BACKEND, MODELWATCH_VERSION),
)  # fmt: skip
CANARY_ROLLBACKS: Final = MetricSpec(
    "modelwatch.canary.rollbacks", "counter", "{rollback}",
    "Candidate versions rolled back automatically (reason: the signal that regressed).",
    (MODELWATCH_ROUTER, MODELWATCH_BACKEND, MODELWATCH_VERSION, REASON),
)  # fmt: skip

# System and process metrics: recorded by opentelemetry-instrumentation-system-metrics when
# ``configure(system_metrics=True)``, not by modelwatch; declared for the dashboards and rules.
PROCESS_MEMORY_USAGE: Final = MetricSpec(
    "process.memory.usage", "observable_up_down_counter", "By",
    "Resident memory of the process (RSS).",
)  # fmt: skip
PROCESS_CPU_TIME: Final = MetricSpec(
    "process.cpu.time", "observable_counter", "s", "CPU time of the process, by type.", ("type",)
)  # fmt: skip
SYSTEM_CPU_UTILIZATION: Final = MetricSpec(
    "system.cpu.utilization", "observable_gauge", "1", "Share of CPU time per state and CPU.",
    ("state", "cpu"),
)  # fmt: skip
SYSTEM_MEMORY_UTILIZATION: Final = MetricSpec(
    "system.memory.utilization", "observable_gauge", "1", "Share of memory per state.",
    ("state",),
)  # fmt: skip
SYSTEM_NETWORK_IO: Final = MetricSpec(
    "system.network.io", "observable_counter", "By", "Bytes sent and received per device.",
    ("device", "direction"),
)  # fmt: skip
SYSTEM_DISK_IO: Final = MetricSpec(
    "system.disk.io", "observable_counter", "By", "Bytes read and written per device.",
    ("device", "direction"),
)  # fmt: skip
#: The system-metrics instrumentation's metrics the dashboards and rules use.
SYSTEM_METRICS: Final[tuple[MetricSpec, ...]] = (
    PROCESS_MEMORY_USAGE,
    PROCESS_CPU_TIME,
    SYSTEM_CPU_UTILIZATION,
    SYSTEM_MEMORY_UTILIZATION,
    SYSTEM_NETWORK_IO,
    SYSTEM_DISK_IO,
)

#: Every metric, in documentation order.
METRICS: Final[tuple[MetricSpec, ...]] = (
    OPERATION_DURATION,
    TOKEN_USAGE,
    TIME_TO_FIRST_CHUNK,
    TIME_PER_OUTPUT_CHUNK,
    INVOKE_AGENT_DURATION,
    EXECUTE_TOOL_DURATION,
    COST,
    CALLS_IN_FLIGHT,
    CALLS_OLDEST_IN_FLIGHT,
    CIRCUIT_STATE,
    CIRCUIT_TRANSITIONS,
    FAILOVERS,
    FAILOVER_DURATION,
    HEDGES,
    HEALTH_STATUS,
    HEALTH_READY,
    HEALTH_CHECK_DURATION,
    RATE_LIMIT_REMAINING,
    BUDGET_USED,
    TASK_DURATION,
    TASK_QUEUE_WAIT,
    QUALITY_SCORE,
    QUALITY_OUTCOMES,
    DRIFT_SCORE,
    ANOMALY_SCORE,
    CANARY_WEIGHT,
    CANARY_ROLLBACKS,
)

# --------------------------------------------------------------------------- error kinds
ERROR_RATE_LIMITED: Final = "rate_limited"
ERROR_TIMEOUT: Final = "timeout"
ERROR_UNAVAILABLE: Final = "unavailable"
ERROR_AUTH: Final = "auth"
ERROR_NOT_FOUND: Final = "not_found"
ERROR_BAD_REQUEST: Final = "bad_request"
ERROR_CANCELLED: Final = "cancelled"
ERROR_OTHER: Final = "_OTHER"
ERROR_KINDS: Final[tuple[str, ...]] = (
    ERROR_RATE_LIMITED,
    ERROR_TIMEOUT,
    ERROR_UNAVAILABLE,
    ERROR_AUTH,
    ERROR_NOT_FOUND,
    ERROR_BAD_REQUEST,
    ERROR_CANCELLED,
    ERROR_OTHER,
)

#: the ``reason`` of a failover past a backend whose breaker was open (not an error of its own)
REASON_CIRCUIT_OPEN: Final = "circuit_open"
#: the ``reason`` of a failover past a backend whose cost budget is spent (``enforce="skip"``)
REASON_BUDGET: Final = "budget"

# health check kinds (``modelwatch.health.kind``)
HEALTH_KIND_MODEL: Final = "model"
HEALTH_KIND_ANALYSIS: Final = "analysis"
HEALTH_KIND_DEPENDENCY: Final = "dependency"

# circuit states as the gauge reports them
CIRCUIT_CLOSED: Final = 0
CIRCUIT_HALF_OPEN: Final = 1
CIRCUIT_OPEN: Final = 2

INSTRUMENTATION_SCOPE: Final = "modelwatch"
