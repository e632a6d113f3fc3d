"""One patcher for every client-library integration: wrapt wrappers on the client classes,
installed by post-import hooks, removed exactly.

An integration supplies only what is specific to its client, as a :class:`Client` table: the
methods to wrap (module, ``Class.method`` path, GenAI operation) and how to read the call's
:class:`~modelwatch.lifecycle.CallSpec`, its request settings and its response from the
method's arguments and result. The :class:`Patcher` does the rest, on the public lifecycle:

- :meth:`Patcher.instrument` registers a ``wrapt`` post-import hook per module, so a client
  library imported later is patched when it is imported, and one already imported now; each
  method is wrapped with ``wrapt.wrap_function_wrapper`` on its class (clients created before
  and after are covered). Idempotent: a method already wrapped by this patcher is left alone.
- every wrapped call: spec -> :func:`~modelwatch.lifecycle.start` -> the original method ->
  :meth:`~modelwatch.lifecycle.Call.fail` on an exception (re-raised unchanged), or the
  response reader then :meth:`~modelwatch.lifecycle.Call.stop` with the result, or, for a
  streaming call, :func:`~modelwatch.lifecycle.wrap_stream` /
  :func:`~modelwatch.lifecycle.wrap_async_stream` with the client's stream hooks. Coroutine
  methods get the async twin of the same wrapper. A failure of the integration's own readers
  is reported and costs telemetry only: the call goes on, its result and exceptions untouched.
- :meth:`Patcher.uninstrument` puts back the exact original objects, except where something
  else re-wrapped the method since (another library's instrumentation is never removed).
- :meth:`Patcher.instrumentor` makes the OpenTelemetry ``BaseInstrumentor`` of the
  integration, for the ``opentelemetry_instrumentor`` entry point (``opentelemetry-instrument``).
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import wrapt

from modelwatch import lifecycle
from modelwatch._safety import report_internal_error
from modelwatch.lifecycle import Call, CallSpec

__all__ = [
    "Client",
    "Method",
    "Patcher",
    "SpecCache",
    "choices_response",
    "choices_text",
    "request_settings",
    "text_stream_hooks",
]


@dataclass(frozen=True)
class Method:
    """One client method to wrap: ``module``'s ``path`` (``"Class.method"``), its operation.

    ``task`` is free for the integration (Hugging Face keeps the inference task there).
    """

    module: str
    path: str
    operation: str
    task: str | None = None


#: ``(method, instance, args, kwargs) -> spec`` (``None``: call unmonitored).
SpecReader = Callable[[Method, Any, tuple[Any, ...], Mapping[str, Any]], "CallSpec | None"]
#: ``(call, method, instance, args, kwargs)``: request settings, input content.
RequestReader = Callable[[Call, Method, Any, tuple[Any, ...], Mapping[str, Any]], None]
#: ``(call, method, result)``: response id, finish reasons, output content.
ResponseReader = Callable[[Call, Method, Any], None]
#: ``(call, method, kwargs) -> wrap_stream keyword hooks`` for one stream.
StreamHooksFactory = Callable[[Call, Method, Mapping[str, Any]], Mapping[str, Any]]


def _stream_flag(kwargs: Mapping[str, Any]) -> bool:
    return bool(kwargs.get("stream"))


# ------------------------------------------------------------------ helpers for the readers
class SpecCache:
    """Specs per ``(operation, model, endpoint)``, built once (bounded: cleared when full)."""

    def __init__(self, provider: str, size: int = 512) -> None:
        self.provider = provider
        self.size = size
        self._specs: dict[tuple[str, str, str | None], CallSpec] = {}

    def get(self, operation: str, model: str, endpoint: str | None) -> CallSpec:
        """The spec of a call of ``model`` at ``endpoint`` (a URL or ``None``)."""
        key = (operation, model, endpoint)
        spec = self._specs.get(key)
        if spec is None:
            spec = lifecycle.model_spec(
                model, self.provider, operation=operation, server_address=endpoint
            )
            if len(self._specs) >= self.size:
                self._specs.clear()
            self._specs[key] = spec
        return spec

    def clear(self) -> None:
        """Forget every spec."""
        self._specs.clear()


@dataclass(frozen=True)
class Client:
    """What one integration knows about its client library (see the module docstring)."""

    name: str
    methods: Sequence[Method]
    spec: SpecReader
    request: RequestReader | None = None
    response: ResponseReader | None = None
    stream_hooks: StreamHooksFactory | None = None
    is_stream: Callable[[Mapping[str, Any]], bool] = _stream_flag
    #: specs the ``spec`` reader caches (cleared by ``uninstrument``)
    specs: SpecCache | None = None
    #: ``(instrumentor class name, its instrumentation_dependencies)``
    instrumentor: tuple[str, Sequence[str]] | None = None


#: Request keywords most clients share -> ``Call.set_request`` setting.
COMMON_SETTINGS: Final[Mapping[str, str]] = {
    **{k: k for k in ("temperature", "max_tokens", "top_p", "top_k", "seed")},
    **{k: k for k in ("frequency_penalty", "presence_penalty")},
    "stop": "stop_sequences",
    "n": "choice_count",
}


def request_settings(kwargs: Mapping[str, Any], table: Mapping[str, str]) -> dict[str, Any]:
    """``Call.set_request`` keywords from a client's request keywords (``table``: client
    keyword -> setting)."""
    return {table[k]: v for k, v in kwargs.items() if k in table and v is not None}


def choices_response(call: Call, result: Any) -> None:
    """Response id, finish reasons and output messages of an OpenAI-shaped answer (openai's
    and huggingface_hub's chat completions, openai's completions)."""
    choices = getattr(result, "choices", None) or []
    call.set_response(
        response_id=getattr(result, "id", None),
        finish_reasons=[c.finish_reason for c in choices if c.finish_reason],
    )
    call.record_messages(
        output=[
            getattr(c, "message", None)
            or {"role": "assistant", "content": c.text, "finish_reason": c.finish_reason}
            for c in choices
        ]
    )


def choices_text(chunk: Any) -> tuple[Sequence[str], str | None]:
    """Text pieces and finish reason of an OpenAI-shaped stream chunk (chat or completion)."""
    pieces, reason = [], None
    for choice in getattr(chunk, "choices", None) or ():
        delta = getattr(choice, "delta", None)
        text = getattr(delta, "content", None) if delta is not None else choice.text
        pieces += [text] if text else []
        reason = choice.finish_reason or reason
    return pieces, reason


#: ``chunk -> (text pieces, finish reason or None)``
ChunkText = Callable[[Any], "tuple[Sequence[str], str | None]"]


def text_stream_hooks(read: ChunkText = choices_text) -> Mapping[str, Any]:
    """``wrap_stream`` hooks that gather a stream's text, finish reasons and response id, and
    record them (``gen_ai.response.*``, the output message when content capture is on)."""
    pieces: list[str] = []
    reasons: list[str] = []
    ids: list[str] = []

    def on_chunk(call: Call, chunk: Any) -> None:
        text, reason = read(chunk)
        pieces.extend(text)
        if reason:
            reasons.append(reason)
        chunk_id = getattr(chunk, "id", None)
        if isinstance(chunk_id, str) and not ids:
            ids.append(chunk_id)

    def on_end(call: Call) -> None:
        call.set_response(response_id=ids[0] if ids else None, finish_reasons=reasons)
        last = reasons[-1] if reasons else None
        call.record_messages(
            output=[{"role": "assistant", "content": "".join(pieces), "finish_reason": last}]
        )

    return {"on_chunk": on_chunk, "on_end": on_end}


class _Wrapper(wrapt.FunctionWrapper):  # type: ignore[type-arg]
    """A method wrapped by a :class:`Patcher` (marks it, so instrumenting twice is harmless)."""


class Patcher:
    """Instruments one client library from its :class:`Client` table."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.RLock()
        self._active = False
        self._hooked: set[str] = set()
        self._patched: dict[tuple[Any, str], tuple[Any, Any]] = {}

    # ------------------------------------------------------------------ install
    def instrument(self) -> None:
        """Wrap every method of the table, now for imported modules, at import for the rest."""
        with self._lock:
            self._active = True
            for module in {m.module for m in self.client.methods}:
                if module not in self._hooked:
                    self._hooked.add(module)
                    wrapt.register_post_import_hook(self._on_import, module)
                elif module in sys.modules:  # the hook fired once already: patch again now
                    self._on_import(sys.modules[module])

    def _on_import(self, module: Any) -> None:
        with self._lock:
            if not self._active:
                return
            for method in self.client.methods:
                if method.module == module.__name__:
                    try:
                        self._wrap(method)
                    except Exception as exc:
                        report_internal_error(f"{self.client.name}.instrument", exc)

    def _wrap(self, method: Method) -> None:
        try:
            parent, attribute, original = wrapt.resolve_path(method.module, method.path)
        except AttributeError:  # not in the installed version of the library
            return
        current = parent.__dict__.get(attribute, original) if inspect.isclass(parent) else original
        if isinstance(current, _Wrapper):
            return
        # unwrap: openai's async methods are sync decorators (functools.wraps) of coroutines
        is_async = inspect.iscoroutinefunction(inspect.unwrap(current))
        make = self._async_wrapper if is_async else self._sync_wrapper
        wrapper = wrapt.wrap_object(parent, attribute, _Wrapper, (make(method),))
        self._patched[(parent, attribute)] = (current, wrapper)

    def uninstrument(self) -> None:
        """Restore the exact original objects (not those re-wrapped by someone else since)."""
        with self._lock:
            self._active = False
            for (parent, attribute), (original, wrapper) in list(self._patched.items()):
                if vars(parent).get(attribute) is wrapper:
                    setattr(parent, attribute, original)
                else:
                    report_internal_error(
                        f"{self.client.name}.uninstrument",
                        RuntimeError(f"{parent.__name__}.{attribute} was re-wrapped by another"),
                    )
                del self._patched[(parent, attribute)]
            if self.client.specs is not None:
                self.client.specs.clear()

    def is_instrumented(self) -> bool:
        """Whether :meth:`instrument` is in effect (and wrapped at least one method)."""
        with self._lock:
            return self._active and bool(self._patched)

    # ------------------------------------------------------------------ the wrappers
    def _begin(self, method: Method, instance: Any, args: Any, kwargs: Any) -> Call | None:
        client = self.client
        try:
            spec = client.spec(method, instance, args, kwargs)
        except Exception as exc:
            report_internal_error(f"{client.name}.spec", exc)
            return None
        if spec is None:
            return None
        call = lifecycle.start(spec)
        if client.request is not None:
            try:
                client.request(call, method, instance, args, kwargs)
            except Exception as exc:
                report_internal_error(f"{client.name}.request", exc)
        return call

    def _streaming(self, kwargs: Any) -> bool:
        try:
            return self.client.is_stream(kwargs)
        except Exception as exc:
            report_internal_error(f"{self.client.name}.is_stream", exc)
            return False

    def _hooks(self, call: Call, method: Method, kwargs: Any) -> Mapping[str, Any]:
        factory = self.client.stream_hooks
        if factory is None:
            return {}
        try:
            return factory(call, method, kwargs)
        except Exception as exc:
            report_internal_error(f"{self.client.name}.stream_hooks", exc)
            return {}

    def _finish(self, call: Call, method: Method, result: Any) -> None:
        if self.client.response is not None:
            try:
                self.client.response(call, method, result)
            except Exception as exc:
                report_internal_error(f"{self.client.name}.response", exc)
        call.stop(result)

    def _sync_wrapper(self, method: Method) -> Callable[..., Any]:
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            call = self._begin(method, instance, args, kwargs)
            if call is None:
                return wrapped(*args, **kwargs)
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                call.fail(exc)
                raise
            if self._streaming(kwargs):
                return lifecycle.wrap_stream(call, result, **self._hooks(call, method, kwargs))
            self._finish(call, method, result)
            return result

        return wrapper

    def _async_wrapper(self, method: Method) -> Callable[..., Any]:
        async def run(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            call = self._begin(method, instance, args, kwargs)  # in the awaiting task
            if call is None:
                return await wrapped(*args, **kwargs)
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                call.fail(exc)
                raise
            if self._streaming(kwargs):
                hooks = self._hooks(call, method, kwargs)
                return lifecycle.wrap_async_stream(call, result, **hooks)
            self._finish(call, method, result)
            return result

        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            return run(wrapped, instance, args, kwargs)

        return wrapper

    # ------------------------------------------------------------------ OpenTelemetry
    def module_getattr(self) -> Callable[[str], Any]:
        """A module ``__getattr__`` that builds the integration's ``BaseInstrumentor`` class on
        first access (so ``opentelemetry-instrumentation`` is needed only by who uses it)."""
        built: dict[str, type[Any]] = {}

        def getattr_(name: str) -> Any:
            spec = self.client.instrumentor
            if spec is None or name != spec[0]:
                raise AttributeError(name)
            if name not in built:
                built[name] = self.instrumentor(*spec)
            return built[name]

        return getattr_

    def instrumentor(self, class_name: str, dependencies: Sequence[str]) -> type[Any]:
        """A ``BaseInstrumentor`` subclass whose ``instrument()``/``uninstrument()`` are this
        patcher's (needs the ``opentelemetry-instrumentation`` package)."""
        from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
            BaseInstrumentor,
        )

        patcher = self
        deps = tuple(dependencies)

        def instrumentation_dependencies(self: Any) -> Sequence[str]:
            return deps

        def _instrument(self: Any, **kwargs: Any) -> None:
            patcher.instrument()

        def _uninstrument(self: Any, **kwargs: Any) -> None:
            patcher.uninstrument()

        return type(
            class_name,
            (BaseInstrumentor,),
            {
                "__doc__": f"OpenTelemetry instrumentor of modelwatch's {self.client.name} "
                "integration (``opentelemetry-instrument`` loads it by entry point).",
                "__module__": f"modelwatch.integrations.{self.client.name}",
                "instrumentation_dependencies": instrumentation_dependencies,
                "_instrument": _instrument,
                "_uninstrument": _uninstrument,
            },
        )
