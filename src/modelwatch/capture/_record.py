"""What a :class:`~modelwatch.capture.call.Call` writes besides its metrics: request settings,
response details, the error on its span, and the end-of-call record its listeners receive.

Kept out of ``call.py`` so the call's hot path stays short to read; everything here runs only
when an integration sets a request or response attribute, when a call fails, or when an
end-of-call listener is registered.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_not
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.trace import Span, Status, StatusCode

from modelwatch import semconv
from modelwatch._safety import report_internal_error
from modelwatch.capture.scrub import scrub, scrub_value
from modelwatch.capture.usage import Usage, extract_usage

if TYPE_CHECKING:
    from modelwatch.capture.call import Call

# ------------------------------------------------------------------ end-of-call records


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A finished call, as :func:`modelwatch.lifecycle.add_listener` listeners receive it.

    One record per logical call: a nested call of the same model forwards its usage to the
    outer call, and only the outer call is reported. Agent and tool steps are reported too
    (``is_model`` false, ``model`` ``None``).

    Attributes:
        operation: ``gen_ai.operation.name``.
        model: the requested model, or ``None`` for an agent or tool step.
        provider: ``gen_ai.provider.name``, when known.
        analysis: ``modelwatch.analysis``, or ``None``.
        duration_s: wall time from start to end, in seconds.
        error_kind: the ``error.type`` of a failed call, ``None`` for a success.
        input_tokens: input tokens recorded, or ``None``.
        output_tokens: output tokens recorded, or ``None``.
        cost: USD cost from the price table, or ``None`` when unpriced or not a model call.
        response_model: the model that answered, when known.
        is_model: a model call (``True``) or an agent/tool step.
        probe: made by a health check or a breaker probe, not by a user.
        cut_short: a stream the consumer stopped reading before its end.
        attributes: the call's metric attributes (low-cardinality, allow-listed).
    """

    operation: str
    model: str | None
    provider: str | None
    analysis: str | None
    duration_s: float
    error_kind: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    response_model: str | None
    is_model: bool
    probe: bool
    cut_short: bool
    attributes: Mapping[str, Any]


Listener = Callable[[CallRecord], None]

#: The registered listeners. Mutated in place only (``call.py`` holds a reference to it and
#: tests its truthiness per call, so no listener costs one list check).
LISTENERS: Final[list[Listener]] = []


def add_listener(listener: Listener) -> None:
    """Call ``listener(record)`` with a :class:`CallRecord` after every call ends.

    Listeners run synchronously in the thread that ended the call, after its span ended;
    keep them quick (append to a queue, feed a detector). An exception a listener raises is
    reported and swallowed: it never reaches the monitored code. Adding the same listener
    twice registers it once.
    """
    if not callable(listener):
        raise TypeError(f"add_listener() takes a callable, got {type(listener).__name__}")
    if listener not in LISTENERS:
        LISTENERS.append(listener)


def remove_listener(listener: Listener) -> None:
    """Stop calling ``listener``; removing one that is not registered does nothing."""
    if listener in LISTENERS:
        LISTENERS.remove(listener)


def notify(call: Call, duration_s: float, cost: float | None, cut_short: bool) -> None:
    """Give the record of the ended ``call`` to every listener; a failing listener is
    reported, the others still run."""
    spec = call._spec
    try:
        record = CallRecord(  # positional, in field order
            spec.operation,
            spec.model,
            spec.provider,
            spec.analysis,
            duration_s,
            call.error_kind,
            call.input_tokens,
            call.output_tokens,
            cost,
            call.response_model,
            spec.is_model,
            call._probe,
            cut_short,
            spec.metric_attributes,
        )
    except Exception as exc:
        report_internal_error("call_record", exc)
        return
    for listener in list(LISTENERS):
        try:
            listener(record)
        except Exception as exc:
            report_internal_error("call_listener", exc)


# ------------------------------------------------------------------ request and response
#: ``Call.set_request`` keyword -> span attribute.
REQUEST_ATTRIBUTES: Final[dict[str, str]] = {
    "temperature": semconv.GEN_AI_REQUEST_TEMPERATURE,
    "max_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "top_p": semconv.GEN_AI_REQUEST_TOP_P,
    "top_k": semconv.GEN_AI_REQUEST_TOP_K,
    "seed": semconv.GEN_AI_REQUEST_SEED,
    "stop_sequences": semconv.GEN_AI_REQUEST_STOP_SEQUENCES,
    "frequency_penalty": semconv.GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": semconv.GEN_AI_REQUEST_PRESENCE_PENALTY,
    "choice_count": semconv.GEN_AI_REQUEST_CHOICE_COUNT,
    "stream": semconv.GEN_AI_REQUEST_STREAM,
    "encoding_formats": semconv.GEN_AI_REQUEST_ENCODING_FORMATS,
    "dimension_count": semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT,
    "output_type": semconv.GEN_AI_OUTPUT_TYPE,
    "conversation_id": semconv.GEN_AI_CONVERSATION_ID,
}


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [scrub(value)]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return [scrub(v) for v in value]
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and type(value) is not bool else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and type(value) is not bool else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return scrub(value) if isinstance(value, str) and value else None


#: ``(span attribute, validator)`` of each ``Call.set_request`` keyword, in its order; a
#: validator returns the attribute value, or ``None`` if the setting cannot be one.
_REQUEST_FIELDS: Final[tuple[tuple[str, Callable[[Any], Any]], ...]] = tuple(
    (REQUEST_ATTRIBUTES[name], check)
    for name, check in (
        ("temperature", _number),
        ("max_tokens", _integer),
        ("top_p", _number),
        ("top_k", _integer),
        ("seed", _integer),
        ("stop_sequences", _strings),
        ("frequency_penalty", _number),
        ("presence_penalty", _number),
        ("choice_count", _integer),
        ("stream", _flag),
        ("encoding_formats", _strings),
        ("dimension_count", _integer),
        ("output_type", _text),
        ("conversation_id", _text),
    )
)


_NONES: Final = repeat(None)  # (endless: shared by every call)


def request_values(values: tuple[Any, ...]) -> dict[str, Any]:
    """Span attributes for the ``Call.set_request`` keyword values, in their order;
    ``None`` and unusable values skipped."""
    out: dict[str, Any] = {}
    # only the settings given (most are None) reach the Python loop
    given = map(is_not, values, _NONES)
    for (key, check), value in compress(zip(_REQUEST_FIELDS, values, strict=True), given):
        valid = check(value)
        if valid is not None:
            out[key] = valid
    return out


def response_attributes(
    response_id: str | None, finish_reasons: Sequence[str] | str | None
) -> dict[str, Any]:
    """Span attributes for a response id and finish reasons (unusable values skipped)."""
    out: dict[str, Any] = {}
    if isinstance(response_id, str) and response_id:
        out[semconv.GEN_AI_RESPONSE_ID] = scrub_value(response_id)
    if isinstance(finish_reasons, str):
        finish_reasons = [finish_reasons]
    if finish_reasons is not None:
        reasons = [r for r in finish_reasons if isinstance(r, str) and r]
        if reasons:
            out[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
    return out


# ------------------------------------------------------------------ errors and usage
def record_error_on_span(span: Span, exc: BaseException, kind: str) -> None:
    """``error.type``, an ERROR status and the scrubbed ``exception`` event on ``span``."""
    message = scrub(str(exc))
    exc_type = type(exc)
    span.set_attribute(semconv.ERROR_TYPE, kind)
    span.set_status(Status(StatusCode.ERROR, message[:500] or exc_type.__name__))
    stack = scrub("".join(traceback.format_exception(exc_type, exc, exc.__traceback__)))
    # the event Span.record_exception writes (without the deprecated exception.escaped),
    # built here so the traceback is formatted once and scrubbed before it is kept
    span.add_event(
        "exception",
        {
            "exception.type": f"{exc_type.__module__}.{exc_type.__qualname__}",
            "exception.message": message,
            "exception.stacktrace": stack,
        },
    )


def coerce_usage(value: Any) -> Usage:
    """What a user ``usage=`` callable returned, as :class:`Usage`.

    Accepts ``(input, output)``, a mapping with ``input_tokens``/``output_tokens``
    (and optionally ``response_model``), a :class:`Usage`, or anything
    :func:`extract_usage` understands.
    """
    if value is None:
        return Usage()
    if isinstance(value, Usage):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return Usage(value[0], value[1])
    if isinstance(value, Mapping) and ("input_tokens" in value or "output_tokens" in value):
        return Usage(
            value.get("input_tokens"), value.get("output_tokens"), value.get("response_model")
        )
    return extract_usage(value)
