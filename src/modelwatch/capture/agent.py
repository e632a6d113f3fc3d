"""``@modelwatch.agent_step``: spans and durations for agent and tool steps."""

from __future__ import annotations

from typing import Any, Literal

from opentelemetry.trace import SpanKind

from modelwatch import semconv
from modelwatch.capture._telemetry import allowed_metric_attributes
from modelwatch.capture.call import CallSpec
from modelwatch.capture.monitor import Monitor


class agent_step(Monitor):  # noqa: N801 - used like a function, as the docs spell it
    """Monitor an agent step (``kind="agent"``) or a tool step (``kind="tool"``).

    A decorator for any call shape, or a ``with``/``async with`` block, like
    :class:`modelwatch.monitored`. Emits an INTERNAL span ``"invoke_agent {name}"`` or
    ``"execute_tool {name}"`` and the ``gen_ai.invoke_agent.duration`` /
    ``gen_ai.execute_tool.duration`` histogram. Model calls inside become its children.
    ``provider`` (an agent's ``gen_ai.provider.name``, e.g. ``openai`` for an OpenAI
    Assistants agent) goes on the span only.

    >>> import modelwatch
    >>> @modelwatch.agent_step("planner")
    ... def plan(goal: str) -> list[str]:
    ...     return [goal]
    >>> plan("ship it")
    ['ship it']
    """

    __slots__ = ()

    def __init__(
        self, name: str, kind: Literal["agent", "tool"] = "agent", *, provider: str | None = None
    ) -> None:
        self._spec = _agent_spec("agent_step()", name, kind, provider)

    def __repr__(self) -> str:
        return f"agent_step({self._spec.span_name!r})"


def agent_spec(
    name: str, kind: Literal["agent", "tool"] = "agent", *, provider: str | None = None
) -> CallSpec:
    """The :class:`CallSpec` of an agent or tool step, with the arguments of :class:`agent_step`.

    Raises ``ValueError`` for an empty name, a kind other than ``agent``/``tool``, or an
    empty provider.
    """
    return _agent_spec("agent_spec()", name, kind, provider)


def _agent_spec(
    who: str, name: str, kind: Literal["agent", "tool"], provider: str | None
) -> CallSpec:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{who}: name must be a non-empty string, got {name!r}")
    if kind not in ("agent", "tool"):
        raise ValueError(f"{who}: kind must be 'agent' or 'tool', got {kind!r}")
    if provider is not None and (not isinstance(provider, str) or not provider.strip()):
        raise ValueError(f"{who}: provider must be a non-empty string or None, got {provider!r}")
    if kind == "agent":
        attributes: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_INVOKE_AGENT,
            semconv.GEN_AI_AGENT_NAME: name,
        }
        instrument = semconv.INVOKE_AGENT_DURATION
    else:
        attributes = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_EXECUTE_TOOL,
            semconv.GEN_AI_TOOL_NAME: name,
        }
        instrument = semconv.EXECUTE_TOOL_DURATION
    metric_attributes = allowed_metric_attributes(attributes)  # the provider is span-only
    if provider is not None:
        attributes[semconv.GEN_AI_PROVIDER_NAME] = provider
    return CallSpec(
        is_model=False,
        operation=attributes[semconv.GEN_AI_OPERATION_NAME],
        provider=provider,
        span_name=semconv.agent_span_name(kind, name),
        span_kind=SpanKind.INTERNAL,
        span_attributes=attributes,
        metric_attributes=metric_attributes,
        duration_instrument=instrument,
    )
