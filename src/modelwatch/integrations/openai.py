"""Model-call telemetry for the ``openai`` clients (``OpenAI``, ``AsyncOpenAI``): chat
completions, completions and embeddings, streams included, with no change at call sites.

Each call emits what ``@modelwatch.monitored`` emits (span, duration, tokens, cost, error kind),
plus request settings, response id, finish reasons, cached and reasoning token counts and, when
content capture is on, the messages. Streams (``stream=True``) end their call when they end, are
closed or dropped; ``stream_options={"include_usage": True}`` usage is read from the last chunk.
Built on :mod:`modelwatch.integrations._patch` and the public lifecycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from modelwatch import semconv
from modelwatch.integrations import _patch
from modelwatch.integrations._patch import Method
from modelwatch.lifecycle import Call, CallSpec

__all__ = ["PROVIDER", "instrument", "is_instrumented", "uninstrument"]

PROVIDER: Final = "openai"
_SPECS: Final = _patch.SpecCache(PROVIDER)
_SETTINGS: Final = {
    **_patch.COMMON_SETTINGS,
    "max_completion_tokens": "max_tokens",
    "encoding_format": "encoding_formats",
    "dimensions": "dimension_count",
}
_OUTPUT_TYPES: Final = {"json_object": "json", "json_schema": "json", "text": "text"}


def _spec(method: Method, client: Any, args: Any, kwargs: Mapping[str, Any]) -> CallSpec:
    url = getattr(getattr(client, "_client", None), "base_url", None)
    return _SPECS.get(method.operation, str(kwargs.get("model")), str(url) if url else None)


def _request(call: Call, method: Method, client: Any, args: Any, kwargs: Mapping[str, Any]) -> None:
    call.set_request(**_patch.request_settings(kwargs, _SETTINGS))
    response_format = kwargs.get("response_format")
    if isinstance(response_format, Mapping):
        call.set_request(output_type=_OUTPUT_TYPES.get(response_format.get("type", "")))
    if method.operation != semconv.OPERATION_EMBEDDINGS:
        call.record_messages(input=kwargs.get("messages", kwargs.get("prompt")))


def _response(call: Call, method: Method, result: Any) -> None:
    data = getattr(result, "data", None)
    if data:  # embeddings
        call.set_request(dimension_count=len(data[0].embedding))
    else:
        _patch.choices_response(call, result)


_R: Final = "openai.resources."
_PATCHER: Final = _patch.Patcher(
    _patch.Client(
        name="openai",
        methods=[
            Method(_R + module, f"{prefix}{cls}.create", operation)
            for module, cls, operation in (
                ("chat.completions", "Completions", semconv.OPERATION_CHAT),
                ("completions", "Completions", semconv.OPERATION_TEXT_COMPLETION),
                ("embeddings", "Embeddings", semconv.OPERATION_EMBEDDINGS),
            )
            for prefix in ("", "Async")
        ],
        spec=_spec,
        request=_request,
        response=_response,
        stream_hooks=lambda *_: _patch.text_stream_hooks(),
        specs=_SPECS,
        instrumentor=("OpenAIInstrumentor", ("openai >= 1.0",)),
    )
)


#: ``instrument()`` (now if ``openai`` is imported, else when it is; idempotent),
#: ``uninstrument()`` (the exact originals back), ``is_instrumented()``; ``OpenAIInstrumentor``
#: is the OpenTelemetry ``BaseInstrumentor`` (entry point ``opentelemetry_instrumentor``).
instrument = _PATCHER.instrument
uninstrument = _PATCHER.uninstrument
is_instrumented = _PATCHER.is_instrumented
__getattr__ = _PATCHER.module_getattr()
