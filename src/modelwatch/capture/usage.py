"""Token usage and response model, read from what model clients return.

Understands, without importing any of them:

- ``openai`` chat completions and streamed chunks (``.usage.prompt_tokens`` /
  ``.completion_tokens``), and the Responses API (``.usage.input_tokens`` / ``.output_tokens``);
- ``huggingface_hub`` ``ChatCompletionOutput`` / stream chunks (same ``usage`` shape),
  ``TextGenerationOutput`` and stream outputs with ``details`` (``generated_tokens``, and
  ``prefill`` or ``input_length`` for input tokens when the server returned them);
- plain dicts (and lists of one dict, as the HF Inference API returns) with a ``usage`` key or
  ``details``.

Anything else yields nothing; extraction never raises (the caller guards it too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and response model found in a model response (``None`` where unknown)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    response_model: str | None = None
    #: ``(cache_read_input, cache_creation_input, reasoning_output)`` tokens, when reported
    details: tuple[int | None, int | None, int | None] | None = None

    def __bool__(self) -> bool:
        return (
            self.input_tokens is not None
            or self.output_tokens is not None
            or self.response_model is not None
        )


EMPTY = Usage()

_SKIP_TYPES = (str, bytes, bytearray, int, float, bool, type(None))


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def _from_usage_block(usage: Any) -> tuple[int | None, int | None]:
    input_tokens = _int(_get(usage, "prompt_tokens"))
    if input_tokens is None:
        input_tokens = _int(_get(usage, "input_tokens"))
    output_tokens = _int(_get(usage, "completion_tokens"))
    if output_tokens is None:
        output_tokens = _int(_get(usage, "output_tokens"))
    return input_tokens, output_tokens


def _from_details(details: Any) -> tuple[int | None, int | None]:
    output_tokens = _int(_get(details, "generated_tokens"))
    prefill = _get(details, "prefill")
    input_tokens = len(prefill) if isinstance(prefill, list) and prefill else None
    if input_tokens is None:  # TGI streams: the last event's details carry input_length
        input_tokens = _int(_get(details, "input_length"))
    return input_tokens, output_tokens


def extract_usage(result: Any) -> Usage:
    """Find token usage and the response model in a client's return value (or a chunk)."""
    if isinstance(result, _SKIP_TYPES):
        return EMPTY
    if isinstance(result, list):
        if len(result) != 1:
            return EMPTY
        result = result[0]
        if isinstance(result, _SKIP_TYPES):
            return EMPTY
    input_tokens = output_tokens = extra = None
    usage = _get(result, "usage")
    if usage is not None and not isinstance(usage, _SKIP_TYPES):
        input_tokens, output_tokens = _from_usage_block(usage)
        extra = _details(usage)
    if input_tokens is None and output_tokens is None:
        details = _get(result, "details")
        if details is not None and not isinstance(details, _SKIP_TYPES):
            input_tokens, output_tokens = _from_details(details)
    model = _get(result, "model")
    response_model = model if isinstance(model, str) and model else None
    if input_tokens is None and output_tokens is None and response_model is None:
        return EMPTY
    return Usage(input_tokens, output_tokens, response_model, extra)


def _details(usage: Any) -> tuple[int | None, int | None, int | None] | None:
    """Cached and reasoning token counts: openai's ``prompt_tokens_details.cached_tokens`` and
    ``completion_tokens_details.reasoning_tokens``, Anthropic-style ``cache_read_input_tokens``
    / ``cache_creation_input_tokens``."""
    read = _int(_get(_get(usage, "prompt_tokens_details"), "cached_tokens"))
    if read is None:
        read = _int(_get(usage, "cache_read_input_tokens"))
    created = _int(_get(usage, "cache_creation_input_tokens"))
    reasoning = _int(_get(_get(usage, "completion_tokens_details"), "reasoning_tokens"))
    if read is None and created is None and reasoning is None:
        return None
    return read, created, reasoning
