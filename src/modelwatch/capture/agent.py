"""``@modelwatch.agent_step``: spans and durations for agent and tool steps."""

from __future__ import annotations

from typing import Any, Literal

from opentelemetry.trace import SpanKind

from modelwatch import semconv
from modelwatch.capture._telemetry import allowed_metric_attributes
from modelwatch.capture.call import CallSpec
from modelwatch.capture.monitor import Monitor


class agent_step(Monitor):  # noqa: N801 - used like a function, as in DESIGN.md
    """Monitor an agent step (``kind="agent"``) or a tool step (``kind="tool"``).

    A decorator for any call shape, or a ``with``/``async with`` block, like
    :class:`modelwatch.monitored`. Emits an INTERNAL span ``"invoke_agent {name}"`` or
    ``"execute_tool {name}"`` and the ``gen_ai.invoke_agent.duration`` /
    ``gen_ai.execute_tool.duration`` histogram. Model calls inside become its children.

    >>> import modelwatch
    >>> @modelwatch.agent_step("planner")
    ... def plan(goal: str) -> list[str]:
    ...     return [goal]
    >>> plan("ship it")
    ['ship it']
    """

    __slots__ = ()

    def __init__(self, name: str, kind: Literal["agent", "tool"] = "agent") -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"agent_step(): name must be a non-empty string, got {name!r}")
        if kind not in ("agent", "tool"):
            raise ValueError(f"agent_step(): kind must be 'agent' or 'tool', got {kind!r}")
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
        self._spec = CallSpec(
            span_name=semconv.agent_span_name(kind, name),
            span_kind=SpanKind.INTERNAL,
            span_attributes=attributes,
            metric_attributes=allowed_metric_attributes(attributes),
            duration_instrument=instrument,
            is_model=False,
            operation=attributes[semconv.GEN_AI_OPERATION_NAME],
        )

    def __repr__(self) -> str:
        return f"agent_step({self._spec.span_name!r})"
