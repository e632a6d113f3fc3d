"""``configure()``, ``flush()`` and ``shutdown()``: SDK providers, exporters, fork and exit hooks.

Resolution order for every setting: explicit argument > ``MODELWATCH_*`` env > standard
``OTEL_*`` env > default. Invalid values raise :class:`ConfigurationError` naming the setting,
the value and what is accepted. Nothing here runs on the hot path of a call.

If the host application already installed SDK tracer or meter providers, they are used as they
are (modelwatch says so once) and never replaced; exporter settings given to ``configure`` are
then ignored with a warning, because the host owns its pipeline.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

import structlog
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from modelwatch import _fleet
from modelwatch._export import (
    EXPORT_TIMEOUT_S,
    SPAN_QUEUE_SIZE,
    ExportResults,
    _BoundedBatchSpanProcessor,
    _metrics_lines,
    _span_line,
    is_pull_reader,
    make_sampler,
    otlp_exporters,
    prometheus_reader,
)
from modelwatch._resolve import Config, resolve
from modelwatch._safety import report_internal_error
from modelwatch.capture import _settings, _telemetry
from modelwatch.capture.cost import set_prices

logger = structlog.get_logger("modelwatch")

#: The most interpreter exit waits for the last export (a dead collector cannot hold it longer).
EXIT_TIMEOUT_S: Final = 2.0

__all__ = [
    "EXPORT_TIMEOUT_S",
    "SPAN_QUEUE_SIZE",
    "Config",
    "configure",
    "current_config",
    "flush",
    "resolve",
    "shutdown",
]


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config: Config | None = None
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self.resource: Resource | None = None
        self.results = ExportResults()
        self.owned = False
        self.registry: Any = None  # the Prometheus registry /metrics serves
        self.endpoint: _fleet.Endpoint | None = None
        self.system_metrics: Any = None
        self.installed: tuple[object, ...] = ()  # global providers modelwatch installed
        self.atexit_registered = False
        self.sigterm_installed = False
        self.said_host_providers = False


_state = _State()


def _serve(config: Config, *, strict: bool) -> Config:
    """Bind ``/metrics`` for this process and register it for discovery."""
    assert config.prometheus_ports is not None
    endpoint = _fleet.serve_metrics(
        _state.registry, config.prometheus_host, config.prometheus_ports, strict=strict
    )
    _state.endpoint = endpoint
    if endpoint is not None and config.prometheus_sd_dir:
        _fleet.register_target(
            config.prometheus_sd_dir, config.prometheus_host, endpoint, config.service_name
        )
    return replace(config, prometheus_port=endpoint.port if endpoint else None)


def _build(config: Config) -> Config:
    """Build the pipeline; on any failure stop what was started (no thread is left)."""
    _state.resource = resource = _fleet.build_resource(config.service_name)
    _state.results = ExportResults()
    readers: list[MetricReader] = []
    tracer_provider = TracerProvider(
        resource=resource, sampler=make_sampler(config), shutdown_on_exit=False
    )
    try:
        kept = _state.endpoint  # a new configure() keeps the endpoint and its port
        if config.prometheus_ports is not None and kept is not None:
            reader, _state.registry = prometheus_reader(_state.registry)
            readers.append(reader)
            config = replace(config, prometheus_port=kept.port)
            if config.prometheus_sd_dir:  # the same file, rewritten with the new labels
                _fleet.register_target(
                    config.prometheus_sd_dir, config.prometheus_host, kept, config.service_name
                )
        elif config.prometheus_ports is not None:  # first: a port taken fails before a thread
            reader, _state.registry = prometheus_reader()
            readers.append(reader)
            ports = config.prometheus_ports
            config = _serve(config, strict=ports[0] == ports[1] != 0)
        span_exporter, metric_exporter = otlp_exporters(config, _state.results)
        if span_exporter is not None:
            tracer_provider.add_span_processor(
                _BoundedBatchSpanProcessor(
                    span_exporter,
                    max_queue_size=SPAN_QUEUE_SIZE,
                    export_timeout_millis=int(config.export_timeout_s * 1000),
                )
            )
        interval_ms = config.metric_export_interval_s * 1000
        if metric_exporter is not None:
            readers.append(
                PeriodicExportingMetricReader(
                    metric_exporter,
                    export_interval_millis=interval_ms,
                    export_timeout_millis=config.export_timeout_s * 1000,
                )
            )
        if config.console:
            tracer_provider.add_span_processor(
                _BoundedBatchSpanProcessor(
                    ConsoleSpanExporter(formatter=_span_line), max_queue_size=SPAN_QUEUE_SIZE
                )
            )
            readers.append(
                PeriodicExportingMetricReader(
                    ConsoleMetricExporter(formatter=_metrics_lines),
                    export_interval_millis=interval_ms,
                )
            )
        meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, shutdown_on_exit=False
        )
    except BaseException:
        _stop(tracer_provider, None, _state.endpoint, readers, EXIT_TIMEOUT_S)
        _state.endpoint = None
        raise
    _state.tracer_provider = tracer_provider
    _state.meter_provider = meter_provider
    _state.owned = True
    if config.system_metrics:
        try:
            _state.system_metrics = _start_system_metrics(meter_provider)
        except Exception as exc:  # the model telemetry works on without them
            report_internal_error("system_metrics", exc)
    return config


def _start_system_metrics(meter_provider: MeterProvider) -> Any:
    """CPU, memory, disk, network and process metrics (``opentelemetry-instrumentation-
    system-metrics``), into modelwatch's meter provider."""
    try:
        from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
    except ImportError:
        logger.error(
            "modelwatch.configure.system_metrics_missing",
            message="system_metrics=True needs: pip install 'modelwatch[system-metrics]'",
        )
        return None
    instrumentor = SystemMetricsInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(meter_provider=meter_provider)
    return instrumentor


def _disable(config: Config) -> Config:
    """``OTEL_SDK_DISABLED=true``: nothing is built or served; calls run uninstrumented."""
    with _state.lock:
        if _state.owned:
            _shutdown_pipeline(timeout_s=EXIT_TIMEOUT_S)
        _state.config = config
        _telemetry.set_configured_providers(None, None)
        logger.info(
            "modelwatch.configure.disabled",
            message="OTEL_SDK_DISABLED=true: no providers, exporters or /metrics",
        )
    return config


def configure(
    *,
    service_name: str | None = None,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    prometheus_port: int | str | None = None,
    console: bool = False,
    capture_content: bool | None = None,
    prices: Mapping[str, Mapping[str, float]] | None = None,
    sample_ratio: float | None = None,
    prometheus_sd_dir: str | None = None,
    system_metrics: bool | None = None,
) -> Config:
    """Set up telemetry export: SDK providers, OTLP exporters, an optional ``/metrics`` endpoint.

    Safe to call more than once: the same settings are a no-op; new settings replace the
    pipeline modelwatch built (the host's own providers are never replaced); a call without
    ``prometheus_port`` keeps the endpoint a previous call opened (``shutdown()`` closes it).
    ``prometheus_port`` may be a range (``"9464-9479"``): each process, including each one
    forked later, serves on the first free port of it, and registers in
    ``prometheus_sd_dir`` (``MODELWATCH_PROMETHEUS_SD_DIR``) for Prometheus ``file_sd``.
    ``system_metrics=True`` adds CPU, memory, disk, network and process metrics.
    Telemetry is flushed at interpreter exit, when a ``multiprocessing`` child ends, and on a
    SIGTERM that would otherwise kill the process without ``atexit`` (the process still dies
    of SIGTERM); forked children export their own telemetry as their own resource.

    Raises:
        ConfigurationError: a setting (argument or environment) is invalid; the message names
            it and the accepted values.

    >>> import modelwatch
    >>> config = modelwatch.configure(service_name="ai-engine")  # doctest: +SKIP
    """
    config = resolve(**locals())  # first statement: the locals are exactly the arguments
    if config.disabled:
        return _disable(config)
    with _state.lock:
        previous = _state.config
        if (
            config.prometheus_ports is None
            and previous is not None
            and previous.prometheus_ports is not None
        ):
            logger.info(
                "modelwatch.configure.prometheus_kept",
                message="configure() without prometheus_port keeps the /metrics endpoint; "
                "call modelwatch.shutdown() first to close it",
                port=previous.prometheus_port,
            )
            config = replace(config, prometheus_ports=previous.prometheus_ports)
        if previous is not None and _same_settings(previous, config):
            return previous
        set_prices(config.prices)
        _settings.apply(config.capture_content)
        host_tp = trace.get_tracer_provider()
        host_mp = metrics.get_meter_provider()
        host_owns = not _state.owned and (
            (isinstance(host_tp, TracerProvider) and host_tp not in _state.installed)
            or (isinstance(host_mp, MeterProvider) and host_mp not in _state.installed)
        )
        if host_owns:
            config = replace(config, host_providers=True, prometheus_port=None)
            if not _state.said_host_providers:
                _state.said_host_providers = True
                logger.info(
                    "modelwatch.configure.host_providers",
                    message="using the tracer and meter providers the application installed",
                )
            if otlp_endpoint or prometheus_port is not None or console:
                logger.warning(
                    "modelwatch.configure.exporters_ignored",
                    message="the application owns its providers; add exporters there",
                )
            _state.config = config
            _telemetry.invalidate()
            return config
        if _state.owned:
            keep = previous is not None and previous.prometheus_ports == config.prometheus_ports
            _shutdown_pipeline(timeout_s=2.0, keep_endpoint=keep)
        try:
            config = _build(config)
        except BaseException:  # nothing half-built stays, nor a config that is not in force
            _state.config = None
            _telemetry.set_configured_providers(None, None)
            raise
        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            trace.set_tracer_provider(_state.tracer_provider)  # type: ignore[arg-type]
            _state.installed += (_state.tracer_provider,)
        if not isinstance(metrics.get_meter_provider(), MeterProvider):
            metrics.set_meter_provider(_state.meter_provider)  # type: ignore[arg-type]
            _state.installed += (_state.meter_provider,)
        _telemetry.set_configured_providers(_state.tracer_provider, _state.meter_provider)
        _state.config = config
        if not _state.atexit_registered:
            atexit.register(_at_exit)
            _register_multiprocessing_exit()
            _state.atexit_registered = True
        if not _state.sigterm_installed:  # SIGTERM's default action skips atexit
            _state.sigterm_installed = _fleet.flush_on_sigterm(_at_exit)
        return config


def _same_settings(a: Config, b: Config) -> bool:
    return replace(a, prometheus_port=None, host_providers=False) == replace(
        b, prometheus_port=None, host_providers=False
    )


def current_config() -> Config | None:
    """The :class:`Config` from the last :func:`configure`, or ``None``."""
    return _state.config


def _flushables(provider: Any) -> list[Any]:
    """What to flush for ``provider``: itself, or for a meter provider its push readers only.

    A pull reader (Prometheus) queues one snapshot per flush and the next scrape prints them
    all: a host's stock ``PrometheusMetricReader`` must never be flushed by modelwatch.
    """
    readers = getattr(provider, "_all_metric_readers", None)
    if isinstance(provider, MeterProvider) and readers is not None:
        return [r for r in list(readers) if not is_pull_reader(r)]
    return [provider] if hasattr(provider, "force_flush") else []


def flush(timeout_s: float = 5.0) -> bool:
    """Export everything buffered now; ``True`` if it all went, within ``timeout_s``.

    ``False`` when an export failed (the collector refused it or was unreachable) or the time
    ran out. Never raises and never waits longer than ``timeout_s``.
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s >= 0:
        raise ValueError(f"flush(): timeout_s must be a number >= 0, got {timeout_s!r}")
    with _state.lock:
        tp = _state.tracer_provider if _state.owned else trace.get_tracer_provider()
        mp = _state.meter_provider if _state.owned else metrics.get_meter_provider()
        targets = _flushables(tp) + _flushables(mp)
        results = _state.results
        failures_before = results.failures
    outcome: dict[int, bool] = {}

    def run() -> None:
        for index, target in enumerate(targets):
            try:
                outcome[index] = bool(target.force_flush(int(timeout_s * 1000)))
            except Exception as exc:
                report_internal_error("flush", exc)
                outcome[index] = False

    worker = threading.Thread(target=run, name="modelwatch-flush", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return False
    return all(outcome.get(i, False) for i in range(len(targets))) and (
        results.failures == failures_before
    )


def _stop(
    tp: TracerProvider | None,
    mp: MeterProvider | None,
    endpoint: _fleet.Endpoint | None,
    readers: list[MetricReader],
    timeout_s: float,
) -> None:
    for provider in (tp, mp):
        if provider is None:
            continue
        try:
            if isinstance(provider, MeterProvider):
                provider.shutdown(timeout_millis=timeout_s * 1000)
            else:
                provider.shutdown()
        except Exception as exc:
            report_internal_error("shutdown", exc)
    for reader in readers:  # readers of a meter provider that was never built
        try:
            reader.shutdown(timeout_millis=timeout_s * 1000)
        except Exception as exc:
            report_internal_error("shutdown", exc)
    if endpoint is not None:
        try:
            endpoint.close(timeout_s)
        except Exception as exc:
            report_internal_error("shutdown", exc)


def _shutdown_pipeline(timeout_s: float, *, keep_endpoint: bool = False) -> None:
    tp, mp, endpoint = _state.tracer_provider, _state.meter_provider, _state.endpoint
    system_metrics = _state.system_metrics
    _state.tracer_provider = _state.meter_provider = None
    if keep_endpoint:
        endpoint = None  # the next pipeline's reader serves through it
    else:
        _state.endpoint = None
    _state.system_metrics = None
    _state.owned = False
    if system_metrics is not None:
        try:
            system_metrics.uninstrument()
        except Exception as exc:
            report_internal_error("shutdown", exc)
    worker = threading.Thread(
        target=_stop, args=(tp, mp, endpoint, [], timeout_s), name="modelwatch-shutdown"
    )
    worker.daemon = True
    worker.start()
    worker.join(timeout_s)


def shutdown() -> None:
    """Flush and stop everything :func:`configure` started, ``/metrics`` included; a later
    :func:`configure` builds a new pipeline. Never raises; bounded in time."""
    with _state.lock:
        if _state.owned:
            _shutdown_pipeline(timeout_s=EXPORT_TIMEOUT_S)
        _state.config = None
        _telemetry.set_configured_providers(None, None)


def _at_exit() -> None:
    """Interpreter exit, a ``multiprocessing`` child ending, a Celery pool child leaving, a
    SIGTERM (then in the main thread, maybe inside ``configure()``: the lock wait is bounded)."""
    try:
        if _state.lock.acquire(timeout=EXIT_TIMEOUT_S):
            try:
                if _state.owned:
                    _shutdown_pipeline(timeout_s=EXIT_TIMEOUT_S)
            finally:
                _state.lock.release()
    except Exception:  # noqa: S110 - interpreter teardown: stay silent
        pass
    _fleet.release_sigterm()  # a SIGTERM held back until this export ends the process now


# ------------------------------------------------------------------------------- fork
def _register_multiprocessing_exit() -> None:
    """``multiprocessing`` ends its children with ``os._exit``: no ``atexit``. Its own exit
    finalizers do run, and the child clears the parent's at start, so register one in each
    child as it starts (``register_after_fork``)."""
    import multiprocessing.util as mp_util

    def in_child(state: _State) -> None:
        mp_util.Finalize(state, _at_exit, exitpriority=-10)

    mp_util.register_after_fork(_state, in_child)


def _after_fork_in_child() -> None:
    """A forked child is its own process of the fleet: a new identity, its own (empty) metric
    state, its own ``/metrics`` port of the range and discovery file. With one fixed port the
    parent keeps it, and the child logs one error and serves none."""
    _state.lock = threading.RLock()
    try:
        _fleet.release_sigterm()  # a child started during shutdown must stay killable
    except Exception as exc:
        report_internal_error("after_fork", exc)
    if not _state.owned:
        return
    try:
        _fleet.renew_identity(_state.tracer_provider, _state.meter_provider)
        if _state.meter_provider is not None:
            _fleet.reset_metric_state(_state.meter_provider)
        _state.results = ExportResults()
        if _state.endpoint is not None:
            _state.endpoint.abandon()
            _state.endpoint = None
        config = _state.config
        if config is not None and config.prometheus_ports is not None:
            _state.config = _serve(config, strict=False)
    except Exception as exc:
        report_internal_error("after_fork", exc)


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
