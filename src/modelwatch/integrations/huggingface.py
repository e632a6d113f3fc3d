"""Model-call telemetry for ``huggingface_hub.InferenceClient`` and ``AsyncInferenceClient``.

:func:`instrument` wraps the text-model methods of both client classes (with wrapt, on the
classes, so clients created before and after are covered) and every call then emits the
model-call telemetry of ``@modelwatch.monitored``: span ``"{operation} {model}"``, provider
``huggingface``, ``server.address`` from the endpoint URL, token usage and response model when
the response carries them, and the error kind of the real HTTP error. Streaming calls
(``stream=True``) return a transparent proxy of the client's stream that ends the call when the
stream ends, is closed, or is dropped. :func:`uninstrument` puts the original methods back.

A wrapped call nested inside an explicit ``@modelwatch.monitored`` of the same model is a nested
call: it gets its own span, and the outer call alone records the metrics (no double count).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import wrapt

from modelwatch import lifecycle, semconv
from modelwatch._safety import report_internal_error
from modelwatch.lifecycle import CallSpec

__all__ = ["METHODS", "PROVIDER", "instrument", "is_instrumented", "uninstrument"]

#: ``gen_ai.provider.name`` of every call made through the Hugging Face clients.
PROVIDER: Final = "huggingface"

#: Client method -> ``gen_ai.operation.name``. Methods missing from the installed
#: ``huggingface_hub`` (``text_to_text`` in most versions) are skipped.
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

_SPEC_CACHE_SIZE: Final = 512

_lock = threading.Lock()
_originals: dict[tuple[type[Any], str], tuple[Any, Any]] = {}
_specs: dict[tuple[str, str, str | None], CallSpec] = {}


class _HFMethodWrapper(wrapt.FunctionWrapper):  # type: ignore[type-arg]
    """Marks a client method wrapped by this module (so instrumenting twice is harmless)."""


def _client_classes() -> list[type[Any]]:
    try:
        from huggingface_hub import AsyncInferenceClient, InferenceClient
    except ImportError as exc:
        raise ImportError(
            "modelwatch.huggingface needs huggingface_hub: pip install 'modelwatch[huggingface]'"
        ) from exc
    return [InferenceClient, AsyncInferenceClient]


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


def _spec_for(operation: str, client: Any, kwargs: dict[str, Any]) -> CallSpec | None:
    try:
        model, url = resolve(client, kwargs.get("model"))
        key = (operation, model, url)
        spec = _specs.get(key)
        if spec is None:
            spec = lifecycle.model_spec(
                model=model, provider=PROVIDER, operation=operation, server_address=url
            )
            if len(_specs) >= _SPEC_CACHE_SIZE:
                _specs.clear()
            _specs[key] = spec
        return spec
    except Exception as exc:
        report_internal_error("huggingface.resolve", exc)
        return None


# ----------------------------------------------------------------------------- wrappers
def _sync_wrapper(operation: str) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        spec = _spec_for(operation, instance, kwargs)
        if spec is None:
            return wrapped(*args, **kwargs)
        call = lifecycle.start(spec)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        if kwargs.get("stream"):
            return lifecycle.wrap_stream(call, result)
        call.stop(result)
        return result

    return wrapper


def _async_wrapper(operation: str) -> Callable[..., Any]:
    async def run(spec: CallSpec, wrapped: Any, args: Any, kwargs: Any) -> Any:
        call = lifecycle.start(spec)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        if kwargs.get("stream"):
            return lifecycle.wrap_async_stream(call, result)
        call.stop(result)
        return result

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        spec = _spec_for(operation, instance, kwargs)
        if spec is None:
            return wrapped(*args, **kwargs)
        return run(spec, wrapped, args, kwargs)

    return wrapper


# ----------------------------------------------------------------------------- public
def instrument() -> None:
    """Wrap ``InferenceClient`` and ``AsyncInferenceClient`` so every call emits telemetry.

    Covers ``text_generation``, ``text_to_text`` (where the installed version has it),
    ``chat_completion`` (also reached through ``client.chat.completions.create``),
    ``summarization``, ``translation`` and ``feature_extraction``, streaming forms included.
    Idempotent; clients created before the call are covered too.

    Raises:
        ImportError: ``huggingface_hub`` is not installed.

    >>> import modelwatch.huggingface
    >>> modelwatch.huggingface.instrument()
    >>> modelwatch.huggingface.is_instrumented()
    True
    >>> modelwatch.huggingface.uninstrument()
    """
    classes = _client_classes()
    with _lock:
        for cls in classes:
            for name, operation in METHODS.items():
                original = cls.__dict__.get(name)
                if original is None or isinstance(original, _HFMethodWrapper):
                    continue
                factory = _async_wrapper if inspect.iscoroutinefunction(original) else _sync_wrapper
                wrapper = _HFMethodWrapper(original, factory(operation))
                setattr(cls, name, wrapper)
                _originals[(cls, name)] = (original, wrapper)


def uninstrument() -> None:
    """Restore the original client methods exactly (the same function objects). Idempotent.

    A method that something else re-wrapped after :func:`instrument` is left alone, so
    another library's instrumentation is never removed by mistake.
    """
    with _lock:
        for (cls, name), (original, wrapper) in list(_originals.items()):
            if cls.__dict__.get(name) is wrapper:
                setattr(cls, name, original)
            else:
                report_internal_error(
                    "huggingface.uninstrument",
                    RuntimeError(f"{cls.__name__}.{name} was re-wrapped by someone else"),
                )
            del _originals[(cls, name)]
        _specs.clear()


def is_instrumented() -> bool:
    """``True`` while :func:`instrument` is in effect."""
    with _lock:
        return bool(_originals)
