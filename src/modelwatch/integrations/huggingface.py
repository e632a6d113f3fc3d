"""Model-call telemetry for ``huggingface_hub.InferenceClient`` and ``AsyncInferenceClient``.

:func:`instrument` wraps the text-model methods of both client classes (on the classes, through
:mod:`modelwatch.integrations._patch`, so clients created before and after are covered) and
every call then emits the model-call telemetry of ``@modelwatch.monitored``: span
``"{operation} {model}"`` (``chat``, ``text_completion`` for the text-generation,
summarization and translation tasks, with the task as ``modelwatch.task``, ``embeddings``),
provider ``huggingface``, ``server.address``/``server.port`` from the endpoint URL, the request
settings, token usage, response id, finish reasons and response model when the answer carries
them, the error kind of the real HTTP error, and prompts and answers when content capture is on.
Streaming calls (``stream=True``) return a transparent proxy of the client's stream that ends
the call when the stream ends, is closed, or is dropped. :func:`uninstrument` puts the original
methods back.

A wrapped call nested inside an explicit ``@modelwatch.monitored`` of the same model is a nested
call: it gets its own span, and the outer call alone records the metrics (no double count).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from modelwatch import semconv
from modelwatch.integrations import _patch
from modelwatch.integrations._patch import Method
from modelwatch.lifecycle import Call, CallSpec

__all__ = [
    "METHODS",
    "PROVIDER",
    "instrument",
    "is_instrumented",
    "uninstrument",
]

#: ``gen_ai.provider.name`` of every call made through the Hugging Face clients.
PROVIDER: Final = "huggingface"

#: Client method -> its inference task (``gen_ai.operation.name`` is the spec operation the
#: task maps to). Methods missing from the installed ``huggingface_hub`` are skipped.
METHODS: Final[dict[str, str]] = {
    "text_generation": "text_generation",
    "text_to_text": "text_generation",
    "chat_completion": semconv.OPERATION_CHAT,
    "summarization": "summarization",
    "translation": "translation",
    "feature_extraction": semconv.OPERATION_EMBEDDINGS,
}

#: Model name used when neither the call nor the client names a model or an endpoint.
UNKNOWN_MODEL: Final = "unknown"

_SPECS: Final = _patch.SpecCache(PROVIDER)

#: request keyword -> ``Call.set_request`` setting
_SETTINGS: Final = {
    **_patch.COMMON_SETTINGS,
    "max_new_tokens": "max_tokens",
    "stop_sequences": "stop_sequences",
}


# ----------------------------------------------------------------------------- resolution
def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _model_from_url(url: str) -> str:
    """``.../models/<id>`` -> ``<id>``; any other endpoint -> ``host[:port]/path``."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for suffix in ("/v1/chat/completions", "/chat/completions", "/v1"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    marker = path.find("/models/")
    if marker >= 0 and path[marker + len("/models/") :]:
        return path[marker + len("/models/") :]
    return f"{parts.netloc}{path}" or url


def resolve(client: Any, call_model: Any) -> tuple[str, str | None]:
    """``(model, endpoint URL or None)`` of a call: the call's ``model=`` wins over the client's.

    A model given as a URL (an Inference Endpoint, a TGI server) names the endpoint too; the
    model name is then the id after ``/models/`` or, failing that, the endpoint's host and path.
    """
    client_model = getattr(client, "model", None)
    client_url = client_model if isinstance(client_model, str) and _is_url(client_model) else None
    for candidate in (call_model, client_model):
        if isinstance(candidate, str) and candidate:
            if _is_url(candidate):
                return _model_from_url(candidate), candidate
            return candidate, client_url
    return UNKNOWN_MODEL, client_url


def _spec(method: Method, client: Any, args: Any, kwargs: Mapping[str, Any]) -> CallSpec:
    model, url = resolve(client, kwargs.get("model"))
    return _SPECS.get(method.operation, model, url)


# ----------------------------------------------------------------------------- readers
def _request(call: Call, method: Method, client: Any, args: Any, kwargs: Mapping[str, Any]) -> None:
    call.set_request(**_patch.request_settings(kwargs, _SETTINGS))
    prompt = args[0] if args else kwargs.get("messages", kwargs.get("prompt", kwargs.get("text")))
    if prompt is not None and method.operation != semconv.OPERATION_EMBEDDINGS:
        call.record_messages(input=prompt)


def _answer_text(result: Any) -> Any:
    if isinstance(result, str):
        return result
    for name in ("generated_text", "summary_text", "translation_text"):
        text = getattr(result, name, None)
        if isinstance(text, str):
            return text
    return None


def _response(call: Call, method: Method, result: Any) -> None:
    if isinstance(result, list) and len(result) == 1:
        result = result[0]
    if getattr(result, "choices", None) is not None:  # chat completion
        _patch.choices_response(call, result)
        return
    shape = getattr(result, "shape", None)
    if shape:  # embeddings (a numpy array)
        call.set_request(dimension_count=int(shape[-1]))
        return
    details = getattr(result, "details", None)
    reason = getattr(details, "finish_reason", None)
    call.set_response(finish_reasons=reason)
    text = _answer_text(result)
    if text is not None:
        call.record_messages(
            output=[{"role": "assistant", "content": text, "finish_reason": reason}]
        )


def _chunk_text(chunk: Any) -> tuple[Sequence[str], str | None]:
    if getattr(chunk, "choices", None) is not None:  # chat stream
        return _patch.choices_text(chunk)
    if isinstance(chunk, str):  # text-generation stream without details
        return [chunk], None
    token = getattr(chunk, "token", None)
    text = [token.text] if token is not None and not token.special else []
    return text, getattr(getattr(chunk, "details", None), "finish_reason", None)


_CLASSES: Final = (
    ("huggingface_hub.inference._client", "InferenceClient"),
    ("huggingface_hub.inference._generated._async_client", "AsyncInferenceClient"),
)
_PATCHER: Final = _patch.Patcher(
    _patch.Client(
        name="huggingface",
        methods=[
            Method(module, f"{cls}.{name}", task)
            for module, cls in _CLASSES
            for name, task in METHODS.items()
        ],
        spec=_spec,
        request=_request,
        response=_response,
        stream_hooks=lambda *_: _patch.text_stream_hooks(_chunk_text),
        specs=_SPECS,
        instrumentor=("HuggingFaceInstrumentor", ("huggingface_hub >= 0.20",)),
    )
)


# ----------------------------------------------------------------------------- public
def instrument() -> None:
    """Wrap ``InferenceClient`` and ``AsyncInferenceClient`` so every call emits telemetry.

    Covers ``text_generation``, ``text_to_text`` (where the installed version has it),
    ``chat_completion`` (also reached through ``client.chat.completions.create``),
    ``summarization``, ``translation`` and ``feature_extraction``, streaming forms included.
    Idempotent; clients created before the call are covered too; if ``huggingface_hub`` is
    imported later, it is instrumented when imported.

    Raises:
        ImportError: ``huggingface_hub`` is not installed.

    >>> import modelwatch.huggingface
    >>> modelwatch.huggingface.instrument()
    >>> modelwatch.huggingface.is_instrumented()
    True
    >>> modelwatch.huggingface.uninstrument()
    """
    try:
        import huggingface_hub  # noqa: F401 - fail loudly when it is missing
    except ImportError as exc:
        raise ImportError(
            "modelwatch.huggingface needs huggingface_hub: pip install 'modelwatch[huggingface]'"
        ) from exc
    _PATCHER.instrument()


def uninstrument() -> None:
    """Restore the original client methods exactly (the same function objects). Idempotent.

    A method that something else re-wrapped after :func:`instrument` is left alone, so
    another library's instrumentation is never removed by mistake.
    """
    _PATCHER.uninstrument()


def is_instrumented() -> bool:
    """``True`` while :func:`instrument` is in effect."""
    return _PATCHER.is_instrumented()


#: ``HuggingFaceInstrumentor``: the OpenTelemetry ``BaseInstrumentor`` of this module.
__getattr__ = _PATCHER.module_getattr()
