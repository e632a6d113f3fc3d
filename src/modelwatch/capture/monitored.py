"""``@modelwatch.monitored``: model-call telemetry for any function or block."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

from opentelemetry.trace import SpanKind

from modelwatch import semconv
from modelwatch.capture._telemetry import allowed_metric_attributes
from modelwatch.capture.call import CallSpec
from modelwatch.capture.monitor import Monitor
from modelwatch.errors import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Unpack


def _require_str(who: str, name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"{who}: {name} must be a non-empty string"
            + (" or None" if optional else "")
            + f", got {value!r}"
        )


def check_tier(who: str, tier: object) -> None:
    """Raise a :class:`~modelwatch.errors.ConfigurationError` naming ``tier`` unless it is
    ``None`` or one of the declared :data:`~modelwatch.semconv.SLO_TIERS`."""
    if tier is not None and tier not in semconv.SLO_TIERS:
        raise ConfigurationError(
            f"{who}: tier must be one of {', '.join(semconv.SLO_TIERS)} or None, got {tier!r}"
        )


def _split_server(server_address: str | None) -> tuple[str | None, int | None]:
    if not server_address:
        return None, None
    if "://" in server_address:
        parts = urlsplit(server_address)
        return parts.hostname or None, parts.port
    host, sep, port = server_address.rpartition(":")
    if sep and port.isdigit() and host and "]" not in port:
        return host.strip("[]"), int(port)
    return server_address, None


class monitored(Monitor):  # noqa: N801 - used like a function, as the docs spell it
    """Monitor a model call: a decorator for any call shape, or a ``with``/``async with`` block.

    Emits the span ``"{operation} {model}"`` (kind CLIENT) with the GenAI attributes, the
    ``gen_ai.client.*`` metrics, ``modelwatch.cost`` and the in-flight gauges. Token usage
    and the response model are read from the return value (openai, huggingface_hub, dicts
    with ``usage``) unless you record them yourself on the :class:`~modelwatch.Call`.

    >>> import modelwatch
    >>> @modelwatch.monitored(model="google/flan-t5-large", provider="huggingface",
    ...                       operation="text_completion", analysis="code_review")
    ... def review(code: str) -> str:
    ...     return "looks fine"
    >>> review("x = 1")
    'looks fine'
    >>> with modelwatch.monitored(model="facebook/bart-large-cnn", provider="huggingface") as call:
    ...     call.record_usage(input_tokens=812, output_tokens=64)

    Args:
        model: the requested model (``gen_ai.request.model``).
        provider: who serves it (``gen_ai.provider.name``: ``huggingface``, ``openai``, ...).
        operation: ``gen_ai.operation.name`` (``chat``, ``text_completion``, ``embeddings``...).
            A client task name (``text_generation``, ``summarization``, ``translation``) is
            accepted: recorded as ``text_completion`` with ``modelwatch.task`` set to it.
        analysis: the analysis type this call serves (``code_review``...), or ``None``.
        server_address: host, ``host:port`` or URL of the endpoint (``server.address``).
        usage: a callable that takes the return value (or each stream chunk) and returns
            ``(input_tokens, output_tokens)``, a mapping with those keys, or an object with a
            ``usage`` attribute.
        router: the router this call is an attempt of (set by :class:`modelwatch.Router`).
        tier: the call's SLO tier, one of :data:`modelwatch.semconv.SLO_TIERS`
            (``"critical"``, ``"standard"``, ``"batch"``), or ``None``: its burn-rate alerts
            use that tier's availability target (``RuleOptions.slo_tiers``).
    """

    __slots__ = ()

    def __init__(
        self,
        *,
        model: str,
        provider: str,
        operation: str = semconv.OPERATION_CHAT,
        analysis: str | None = None,
        server_address: str | None = None,
        usage: Callable[[Any], Any] | None = None,
        router: str | None = None,
        tier: str | None = None,
    ) -> None:
        self._spec = _model_spec(
            "monitored()",
            model,
            provider,
            operation,
            analysis,
            server_address,
            usage,
            router,
            tier=tier,
        )

    def __repr__(self) -> str:
        return f"monitored(model={self._spec.model!r}, provider={self._spec.provider!r})"


class ModelOptions(TypedDict, total=False):
    """The optional keyword arguments of :func:`model_spec` (those of :class:`monitored`)."""

    operation: str
    analysis: str | None
    server_address: str | None
    usage: Callable[[Any], Any] | None
    router: str | None
    task: str | None
    tier: str | None


def model_spec(model: str, provider: str, **options: Unpack[ModelOptions]) -> CallSpec:
    """The :class:`CallSpec` of a model call, with the arguments of :class:`monitored`
    (``operation``, ``analysis``, ``server_address``, ``usage``, ``router``, ``tier`` by
    keyword).

    Build it once per distinct model, operation and endpoint (it precomputes the span name
    and attribute dicts) and start each call from it with :func:`modelwatch.lifecycle.start`.
    Raises ``ValueError`` for an empty or non-string name, like :class:`monitored`, and
    ``TypeError`` for an unknown keyword.
    """
    unknown = set(options) - set(ModelOptions.__annotations__)
    if unknown:
        raise TypeError(f"model_spec() got unexpected keyword arguments {sorted(unknown)}")
    return _model_spec(
        "model_spec()",
        model,
        provider,
        options.get("operation", semconv.OPERATION_CHAT),
        options.get("analysis"),
        options.get("server_address"),
        options.get("usage"),
        options.get("router"),
        options.get("task"),
        tier=options.get("tier"),
    )


def _model_spec(  # noqa: PLR0917 - private; both callers pass every argument in order
    who: str,
    model: str,
    provider: str,
    operation: str,
    analysis: str | None,
    server_address: str | None,
    usage: Callable[[Any], Any] | None,
    router: str | None,
    task: str | None = None,
    *,
    tier: str | None = None,
) -> CallSpec:
    _require_str(who, "model", model)
    _require_str(who, "provider", provider)
    _require_str(who, "operation", operation)
    _require_str(who, "analysis", analysis, optional=True)
    _require_str(who, "server_address", server_address, optional=True)
    _require_str(who, "router", router, optional=True)
    _require_str(who, "task", task, optional=True)
    check_tier(who, tier)
    if operation in semconv.TASK_OPERATIONS:  # a client task name: the spec value, task kept
        task = task or operation
        operation = semconv.TASK_OPERATIONS[operation]
    if usage is not None and not callable(usage):
        raise ValueError(f"{who}: usage must be callable or None, got {usage!r}")
    host, port = _split_server(server_address)
    span_attributes: dict[str, Any] = {
        semconv.GEN_AI_OPERATION_NAME: operation,
        semconv.GEN_AI_PROVIDER_NAME: provider,
        semconv.GEN_AI_REQUEST_MODEL: model,
    }
    if host:
        span_attributes[semconv.SERVER_ADDRESS] = host
    if port is not None:
        span_attributes[semconv.SERVER_PORT] = port
    if analysis:
        span_attributes[semconv.MODELWATCH_ANALYSIS] = analysis
    if router:
        span_attributes[semconv.MODELWATCH_ROUTER] = router
    if task:
        span_attributes[semconv.MODELWATCH_TASK] = task
    if tier:
        span_attributes[semconv.MODELWATCH_TIER] = tier
    return CallSpec(
        span_name=semconv.model_span_name(operation, model),
        span_kind=SpanKind.CLIENT,
        span_attributes=span_attributes,
        metric_attributes=allowed_metric_attributes(span_attributes),
        duration_instrument=semconv.OPERATION_DURATION,
        is_model=True,
        model=model,
        provider=provider,
        operation=operation,
        analysis=analysis,
        usage=usage,
    )
