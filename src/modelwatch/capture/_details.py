"""What integrations and users record on a running call besides its outcome: usage, request
settings, response details, content. :class:`CallDetails` is a base of
:class:`~modelwatch.capture.call.Call`; it holds no state of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from opentelemetry.trace import Span

from modelwatch import semconv
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture import _content, _settings
from modelwatch.capture._record import request_values, response_attributes
from modelwatch.capture.scrub import scrub_value


class CallDetails:
    """The recording methods of :class:`~modelwatch.Call` (see there).

    What they record for the span waits in ``_pending`` (created on the first write to a
    recording span) and is written with one ``Span.set_attributes`` as the call ends, in the
    order it was recorded: the ended span carries exactly what it did when every method wrote at
    once, for a fraction of the cost (each ``Span.set_attribute`` takes the span's lock). A
    span processor's ``on_start`` sees the start attributes only, as it always did; a method
    called after the call ended writes to the span directly (which ignores it, as before).
    """

    __slots__ = (
        "_input_tokens",
        "_output_tokens",
        "_pending",
        "_response_model",
        "_span",
        "_usage_explicit",
    )

    _span: Span | None
    _pending: dict[str, Any] | None
    _once: list[bool]  # (a slot of Call) non-empty until the call ends
    _usage_explicit: bool
    _input_tokens: int | None
    _output_tokens: int | None
    _response_model: str | None

    def _pending_for_span(self) -> dict[str, Any] | None:
        """The attributes waiting for the span's end (made on first use), or ``None`` when
        they go to the span at once: the call has ended, or its span is not recording."""
        pending = self._pending
        if pending is None:
            span = self._span
            if span is None or not self._once or not span.is_recording():
                return None
            pending = self._pending = {}
        return pending

    def _put(self, key: str, value: Any) -> None:
        pending = self._pending_for_span()
        if pending is not None:
            pending[key] = value
        elif self._span is not None:
            self._span.set_attribute(key, value)

    def _put_all(self, attributes: dict[str, Any]) -> None:
        pending = self._pending_for_span()
        if pending is not None:
            pending.update(attributes)
        elif self._span is not None:
            self._span.set_attributes(attributes)

    def record_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        *,
        cache_read_input_tokens: int | None = None,
        cache_creation_input_tokens: int | None = None,
        reasoning_output_tokens: int | None = None,
    ) -> None:
        """Record token usage; overrides what would be read from the return value.

        The cache and reasoning counts go on the span only
        (``gen_ai.usage.cache_read.input_tokens``, ``gen_ai.usage.cache_creation.input_tokens``,
        ``gen_ai.usage.reasoning.output_tokens``). Raises ``ValueError`` for a negative or
        non-integer count (bad input to the API); nothing is recorded in that case.
        """
        details = (cache_read_input_tokens, cache_creation_input_tokens, reasoning_output_tokens)
        plain = (  # the common case, checked inline: two exact ints (or None) and no details
            details == _NO_DETAILS
            and (input_tokens is None or (type(input_tokens) is int and input_tokens >= 0))
            and (output_tokens is None or (type(output_tokens) is int and output_tokens >= 0))
        )
        if not plain:
            _check_counts((input_tokens, output_tokens, *details))
        try:
            if input_tokens is not None or output_tokens is not None or details == _NO_DETAILS:
                self._set_usage(input_tokens, output_tokens, explicit=True)
            if not plain:
                self._set_details(*details)
        except Exception as exc:  # inline: a guard() context manager costs ~1 µs
            report_internal_error("record_usage", exc)

    def _set_details(self, read: int | None, created: int | None, reasoning: int | None) -> None:
        for key, value in (
            (semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, read),
            (semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, created),
            (semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning),
        ):
            if value is not None:
                self._put(key, value)

    def set_response_model(self, model: str) -> None:
        """Record the model that actually answered (``gen_ai.response.model``)."""
        if not isinstance(model, str):
            raise TypeError(f"response model must be a str, got {type(model).__name__}")
        try:
            self._response_model = model or None
            if model:
                self._put(semconv.GEN_AI_RESPONSE_MODEL, model)
        except Exception as exc:
            report_internal_error("set_response_model", exc)

    def set_attribute(self, key: str, value: Any) -> None:
        """Set an attribute on this call's span (strings are scrubbed of secrets).

        Span only: metrics carry the allow-listed attributes alone.
        """
        if not isinstance(key, str) or not key:
            raise TypeError(f"attribute key must be a non-empty str, got {key!r}")
        try:
            if self._span is not None:
                self._put(key, scrub_value(value))
        except Exception as exc:
            report_internal_error("set_attribute", exc)

    def record_messages(self, input: Any = None, output: Any = None, system: Any = None) -> None:
        """Record prompt and completion content, only if content capture is enabled.

        ``input``/``output``: a text (a user prompt, an assistant answer), a list of
        ``{"role": ..., "content": ...}`` messages (openai style, dicts or objects) or of
        messages already in the conventions' role-and-parts form; system messages in
        ``input`` go to ``gen_ai.system_instructions``, as does ``system`` (a text or parts).
        Written as ``gen_ai.input.messages`` / ``gen_ai.output.messages`` /
        ``gen_ai.system_instructions`` JSON on the span and/or as the
        ``gen_ai.client.inference.operation.details`` event, as
        ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` says (``SPAN_ONLY``,
        ``EVENT_ONLY``, ``SPAN_AND_EVENT``; ``true`` = span). Off unless
        ``configure(capture_content=True)`` or that variable enables it; scrubbed of secrets.
        """
        if not _settings.capture_content or self._span is None:
            return
        with guard("record_messages"):
            found: dict[str, str] = {}
            instructions = _content.system_parts(system) if system is not None else []
            if input is not None:
                more, chat = _content.split_system(_content.messages(input, "user"))
                instructions += more
                found[semconv.GEN_AI_INPUT_MESSAGES] = _content.encode(chat)
            if instructions:
                found[semconv.GEN_AI_SYSTEM_INSTRUCTIONS] = _content.encode(instructions)
            if output is not None:
                found[semconv.GEN_AI_OUTPUT_MESSAGES] = _content.encode(
                    _content.messages(output, "assistant")
                )
            if found and _settings.content_on_span:
                self._put_all(found)
            if found and _settings.content_on_event:
                self._span.add_event(semconv.EVENT_INFERENCE_DETAILS, found)

    def set_request(
        self,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        stop_sequences: str | Sequence[str] | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        choice_count: int | None = None,
        stream: bool | None = None,
        encoding_formats: str | Sequence[str] | None = None,
        dimension_count: int | None = None,
        output_type: str | None = None,
        conversation_id: str | None = None,
    ) -> None:
        """Record what the request asked for, as the ``gen_ai.request.*`` span attributes
        (and ``gen_ai.embeddings.dimension.count``, ``gen_ai.output.type``,
        ``gen_ai.conversation.id``). ``None`` and values of the wrong type are skipped;
        strings are scrubbed. Span only: request settings never label a metric."""
        try:
            if self._span is not None:
                attributes = request_values(
                    (
                        temperature,
                        max_tokens,
                        top_p,
                        top_k,
                        seed,
                        stop_sequences,
                        frequency_penalty,
                        presence_penalty,
                        choice_count,
                        stream,
                        encoding_formats,
                        dimension_count,
                        output_type,
                        conversation_id,
                    )
                )
                if attributes:
                    self._put_all(attributes)
        except Exception as exc:
            report_internal_error("set_request", exc)

    def set_response(
        self,
        *,
        response_id: str | None = None,
        finish_reasons: str | Sequence[str] | None = None,
        model: str | None = None,
    ) -> None:
        """Record ``gen_ai.response.id``, ``gen_ai.response.finish_reasons`` and (like
        :meth:`set_response_model`) ``gen_ai.response.model``. ``None`` skips a field."""
        try:
            if isinstance(model, str) and model:
                self._response_model = model
                self._put(semconv.GEN_AI_RESPONSE_MODEL, model)
            if self._span is not None:
                attributes = response_attributes(response_id, finish_reasons)
                if attributes:
                    self._put_all(attributes)
        except Exception as exc:
            report_internal_error("set_response", exc)

    def _set_usage(
        self, input_tokens: int | None, output_tokens: int | None, *, explicit: bool
    ) -> None:
        if not explicit and self._usage_explicit:
            return
        if explicit:
            self._usage_explicit = True
        if input_tokens is not None:
            self._input_tokens = input_tokens
            self._put(semconv.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
        if output_tokens is not None:
            self._output_tokens = output_tokens
            self._put(semconv.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)


_NO_DETAILS: Final = (None, None, None)
_COUNT_NAMES: Final = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_output_tokens",
)


def _check_counts(values: tuple[Any, ...]) -> None:
    """Raise ``ValueError`` for a count that is not a non-negative int (or ``None``)."""
    for name, value in zip(_COUNT_NAMES, values, strict=True):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")
