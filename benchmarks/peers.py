"""Peer libraries' decorators on the benchmark's function: OpenLLMetry and OpenLIT.

They live in their own virtual environment so this project's stays clean::

    python3.11 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install -e . traceloop-sdk openlit

``bench_overhead.py`` finds that interpreter (``--peers-python``, ``$MODELWATCH_PEERS_PYTHON`` or
``/tmp/peers-venv/bin/python``) and runs one worker process per peer, because each peer installs
its own global tracer and meter providers. Every peer is set up to run offline: its exporters
point at the benchmark's local OTLP sink, its phone-home and remote fetches are switched off,
and the worker's offline guard refuses (and reports) any non-loopback connection.

Each setup function returns ``{variant name: (decorate, is_async, before_batch)}``: ``decorate``
applies the peer's decorator to a function; ``before_batch`` runs outside the timed region (used
to toggle an env-driven option).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

Decorate = Callable[[Callable[..., Any]], Callable[..., Any]]
Variant = tuple[Decorate, bool, Callable[[], None] | None]

PEERS = ("traceloop", "openlit")


def _content(enabled: bool) -> Callable[[], None]:
    def toggle() -> None:
        os.environ["TRACELOOP_TRACE_CONTENT"] = "true" if enabled else "false"

    return toggle


def setup_traceloop(endpoint: str) -> tuple[dict[str, Variant], dict[str, Any]]:
    """OpenLLMetry (``traceloop-sdk``): ``@workflow`` and ``@task``, exporting OTLP to ``endpoint``.

    Offline: ``api_endpoint`` is the local sink (no API key, so no Traceloop client, prompt sync
    or image upload), ``telemetry_enabled=False``, and no library auto-instrumentation
    (``instruments=set()``: only the decorators are measured). Content tracing is on by default
    in traceloop (inputs and outputs JSON-encoded onto the span); both settings are measured.
    """
    os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
    os.environ["TRACELOOP_TRACE_CONTENT"] = "true"
    from importlib.metadata import version

    from traceloop.sdk import Traceloop
    from traceloop.sdk.decorators import task, workflow

    Traceloop.init(
        app_name="modelwatch-bench",
        api_endpoint=endpoint,
        telemetry_enabled=False,
        instruments=set(),
        disable_batch=False,
    )
    variants: dict[str, Variant] = {
        "traceloop @workflow": (workflow(name="review"), False, _content(True)),
        "traceloop @task": (task(name="review"), False, _content(True)),
        "traceloop @workflow, content off": (workflow(name="review"), False, _content(False)),
        "traceloop @workflow async": (workflow(name="review"), True, _content(True)),
    }
    return variants, {"traceloop-sdk": version("traceloop-sdk")}


def setup_openlit(endpoint: str) -> tuple[dict[str, Variant], dict[str, Any]]:
    """OpenLIT: ``@openlit.trace``, exporting OTLP to ``endpoint``.

    Offline: a local empty pricing file (by default ``init`` downloads one from GitHub), no GPU
    or system metrics, every auto-instrumentor disabled (only the decorator is measured).
    ``@openlit.trace`` has no async support (on an ``async def`` it ends the span before the
    coroutine runs), so no async variant is measured for it.
    """
    from importlib.metadata import version

    import openlit
    from openlit._instrumentors import MODULE_NAME_MAP

    pricing = os.path.join(tempfile.mkdtemp(prefix="openlit-bench-"), "pricing.json")
    with open(pricing, "w", encoding="utf-8") as f:
        json.dump({}, f)
    openlit.init(
        service_name="modelwatch-bench",
        otlp_endpoint=endpoint,
        pricing_json=pricing,
        collect_gpu_stats=False,
        collect_system_metrics=False,
        disabled_instrumentors=list(MODULE_NAME_MAP),
    )
    variants: dict[str, Variant] = {"openlit @trace": (openlit.trace, False, None)}
    return variants, {"openlit": version("openlit")}


SETUPS = {"traceloop": setup_traceloop, "openlit": setup_openlit}
