"""What integrations and users record on a running call besides its outcome: usage, request
settings, response details, content. :class:`CallDetails` is a base of
:class:`~modelwatch.capture.call.Call`; it holds no state of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import Span

from modelwatch import semconv
from modelwatch._safety import guard
from modelwatch.capture import _content, _settings
from modelwatch.capture._record import request_attributes, response_attributes
from modelwatch.capture.scrub import scrub_value


class CallDetails:
    """The recording methods of :class:`~modelwatch.Call` (see there)."""

    __slots__ = ("_input_tokens", "_output_tokens", "_response_model", "_span", "_usage_explicit")

    _span: Span | None
    _usage_explicit: bool
    _input_tokens: int | None
    _output_tokens: int | None
    _response_model: str | None

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
        names = (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "reasoning_output_tokens",
        )
        for name, value in zip(names, (input_tokens, output_tokens, *details), strict=True):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")
        with guard("record_usage"):
            if input_tokens is not None or output_tokens is not None or details == (None,) * 3:
                self._set_usage(input_tokens, output_tokens, explicit=True)
            self._set_details(*details)

    def _set_details(self, read: int | None, created: int | None, reasoning: int | None) -> None:
        if self._span is not None:
            for key, value in (
                (semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, read),
                (semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, created),
                (semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning),
            ):
                if value is not None:
                    self._span.set_attribute(key, value)

    def set_response_model(self, model: str) -> None:
        """Record the model that actually answered (``gen_ai.response.model``)."""
        if not isinstance(model, str):
            raise TypeError(f"response model must be a str, got {type(model).__name__}")
        with guard("set_response_model"):
            self._response_model = model or None
            if self._span is not None and model:
                self._span.set_attribute(semconv.GEN_AI_RESPONSE_MODEL, model)

    def set_attribute(self, key: str, value: Any) -> None:
        """Set an attribute on this call's span (strings are scrubbed of secrets).

        Span only: metrics carry the allow-listed attributes alone.
        """
        if not isinstance(key, str) or not key:
            raise TypeError(f"attribute key must be a non-empty str, got {key!r}")
        with guard("set_attribute"):
            if self._span is not None:
                self._span.set_attribute(key, scrub_value(value))  # type: ignore[arg-type]

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
                self._span.set_attributes(found)
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
        with guard("set_request"):
            if self._span is not None:
                attributes = request_attributes(
                    {
                        "temperature": temperature,
                        "max_tokens": max_tokens,
                        "top_p": top_p,
                        "top_k": top_k,
                        "seed": seed,
                        "stop_sequences": stop_sequences,
                        "frequency_penalty": frequency_penalty,
                        "presence_penalty": presence_penalty,
                        "choice_count": choice_count,
                        "stream": stream,
                        "encoding_formats": encoding_formats,
                        "dimension_count": dimension_count,
                        "output_type": output_type,
                        "conversation_id": conversation_id,
                    }
                )
                if attributes:
                    self._span.set_attributes(attributes)

    def set_response(
        self,
        *,
        response_id: str | None = None,
        finish_reasons: str | Sequence[str] | None = None,
        model: str | None = None,
    ) -> None:
        """Record ``gen_ai.response.id``, ``gen_ai.response.finish_reasons`` and (like
        :meth:`set_response_model`) ``gen_ai.response.model``. ``None`` skips a field."""
        with guard("set_response"):
            if isinstance(model, str) and model:
                self.set_response_model(model)
            if self._span is not None:
                attributes = response_attributes(response_id, finish_reasons)
                if attributes:
                    self._span.set_attributes(attributes)

    def _set_usage(
        self, input_tokens: int | None, output_tokens: int | None, *, explicit: bool
    ) -> None:
        if not explicit and self._usage_explicit:
            return
        if explicit:
            self._usage_explicit = True
        if input_tokens is not None:
            self._input_tokens = input_tokens
        if output_tokens is not None:
            self._output_tokens = output_tokens
        span = self._span
        if span is not None:
            if input_tokens is not None:
                span.set_attribute(semconv.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
            if output_tokens is not None:
                span.set_attribute(semconv.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)
