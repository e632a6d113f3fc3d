"""The public call lifecycle, for integration authors: start a model call, record what it
asked for and what it used, end it once with a result or an exception, follow its stream.

The same mechanism ``@modelwatch.monitored``, ``agent_step``, the router and the client
integrations run on; a call driven by hand emits exactly the telemetry a decorated one does.

>>> from modelwatch import lifecycle
>>> SPEC = lifecycle.model_spec(model="gpt-4o-mini", provider="openai")   # once
>>> def complete(prompt: str) -> str:
...     call = lifecycle.start(SPEC)          # span started and made current
...     call.set_request(temperature=0.2, max_tokens=64)
...     try:
...         answer = prompt.upper()           # the client call
...     except BaseException as exc:
...         call.fail(exc)                    # error.type, status, exception event
...         raise
...     call.stop(answer)                     # usage read from the answer; ends once
...     return answer
>>> complete("hi")
'HI'

Streams: ``return lifecycle.wrap_stream(call, stream)`` (or :func:`wrap_async_stream`)
after the request was sent; the call then ends when the stream ends, fails, is closed or is
dropped, with ``on_chunk``/``on_end``/``on_error`` hooks for what only the integration can
read from chunks. Listeners (:func:`add_listener`) receive a :class:`CallRecord` per finished
call; none registered costs one list check per call.

Semantics: :func:`start` makes the call current (nested calls become its children);
:meth:`Call.detach` stops that in the starting context (``stop``/``fail``/``wrap_stream``
detach themselves). ``stop``/``fail`` are idempotent: the first ending wins. Nothing here
raises into the host except argument errors (``TypeError``/``ValueError``) at the call site.
"""

from modelwatch.capture._record import CallRecord, Listener, add_listener, remove_listener
from modelwatch.capture.agent import agent_spec
from modelwatch.capture.call import Call, CallSpec, current_call
from modelwatch.capture.call import start_call as start
from modelwatch.capture.monitored import model_spec
from modelwatch.capture.streams import StreamHooks, wrap_async_stream, wrap_stream

__all__ = [
    "Call",
    "CallRecord",
    "CallSpec",
    "Listener",
    "StreamHooks",
    "add_listener",
    "agent_spec",
    "current_call",
    "model_spec",
    "remove_listener",
    "start",
    "wrap_async_stream",
    "wrap_stream",
]
