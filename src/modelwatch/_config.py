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
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from modelwatch._export import (
    EXPORT_TIMEOUT_S,
    METRIC_EXPORT_INTERVAL_S,
    SPAN_QUEUE_SIZE,
    _BoundedBatchSpanProcessor,
    _metrics_lines,
    _otlp_exporters,
    _prometheus_reader,
    _span_line,
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


def _is_sdk_provider(provider: object, sdk_type: type) -> bool:
    return isinstance(provider, sdk_type)


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config: Config | None = None
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self.owned = False
        self.prometheus_server: Any = None
        self.atexit_registered = False
        self.said_host_providers = False


_state = _State()


def _sampler(ratio: float) -> ParentBased:
    return ParentBased(TraceIdRatioBased(ratio))


def _build(config: Config) -> Config:
    resource = Resource.create({SERVICE_NAME: config.service_name})
    tracer_provider = TracerProvider(
        resource=resource, sampler=_sampler(config.sample_ratio), shutdown_on_exit=False
    )
    readers: list[MetricReader] = []
    if config.otlp_endpoint:
        span_exporter, metric_exporter = _otlp_exporters(config)
        tracer_provider.add_span_processor(
            _BoundedBatchSpanProcessor(
                span_exporter,
                max_queue_size=SPAN_QUEUE_SIZE,
                export_timeout_millis=int(EXPORT_TIMEOUT_S * 1000),
            )
        )
        readers.append(
            PeriodicExportingMetricReader(
                metric_exporter,
                export_interval_millis=METRIC_EXPORT_INTERVAL_S * 1000,
                export_timeout_millis=EXPORT_TIMEOUT_S * 1000,
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
                export_interval_millis=METRIC_EXPORT_INTERVAL_S * 1000,
            )
        )
    prometheus_server = None
    if config.prometheus_port is not None:
        reader, prometheus_server, bound = _prometheus_reader(config)
        readers.append(reader)
        config = replace(config, prometheus_port=bound)
    meter_provider = MeterProvider(
        resource=resource, metric_readers=readers, shutdown_on_exit=False
    )
    _state.tracer_provider = tracer_provider
    _state.meter_provider = meter_provider
    _state.prometheus_server = prometheus_server
    _state.owned = True
    return config


def configure(
    *,
    service_name: str | None = None,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    prometheus_port: int | None = None,
    console: bool = False,
    capture_content: bool | None = None,
    prices: Mapping[str, Mapping[str, float]] | None = None,
    sample_ratio: float | None = None,
) -> Config:
    """Set up telemetry export: SDK providers, OTLP exporters, an optional ``/metrics`` endpoint.

    Safe to call more than once: the same settings are a no-op; new settings replace the
    pipeline modelwatch built (the host's own providers are never replaced). Telemetry is
    flushed at interpreter exit, and forked children (pre-fork servers, Celery prefork)
    export their own telemetry.

    Raises:
        ConfigurationError: a setting (argument or environment) is invalid; the message names
            it and the accepted values.

    >>> import modelwatch
    >>> config = modelwatch.configure(service_name="ai-engine")  # doctest: +SKIP
    """
    config = resolve(
        service_name=service_name,
        otlp_endpoint=otlp_endpoint,
        otlp_protocol=otlp_protocol,
        prometheus_port=prometheus_port,
        console=console,
        capture_content=capture_content,
        prices=prices,
        sample_ratio=sample_ratio,
    )
    with _state.lock:
        previous = _state.config
        if previous is not None and _same_settings(previous, config):
            return previous
        set_prices(config.prices)
        _settings.capture_content = config.capture_content
        host_tp = trace.get_tracer_provider()
        host_mp = metrics.get_meter_provider()
        host_owns = not _state.owned and (
            _is_sdk_provider(host_tp, TracerProvider) or _is_sdk_provider(host_mp, MeterProvider)
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
            _shutdown_pipeline(timeout_s=2.0)
        config = _build(config)
        first_install = not isinstance(trace.get_tracer_provider(), TracerProvider)
        if first_install:
            trace.set_tracer_provider(_state.tracer_provider)  # type: ignore[arg-type]
        if not isinstance(metrics.get_meter_provider(), MeterProvider):
            metrics.set_meter_provider(_state.meter_provider)  # type: ignore[arg-type]
        _telemetry.set_configured_providers(_state.tracer_provider, _state.meter_provider)
        _state.config = config
        if not _state.atexit_registered:
            atexit.register(_at_exit)
            _state.atexit_registered = True
        return config


def _same_settings(a: Config, b: Config) -> bool:
    a_cmp = replace(a, prometheus_port=None, host_providers=False)
    b_cmp = replace(b, prometheus_port=None, host_providers=False)
    if a_cmp != b_cmp:
        return False
    return b.prometheus_port in (None, 0, a.prometheus_port) or a.host_providers


def current_config() -> Config | None:
    """The :class:`Config` from the last :func:`configure`, or ``None``."""
    return _state.config


def flush(timeout_s: float = 5.0) -> bool:
    """Export everything buffered now; ``True`` if it all went within ``timeout_s``.

    Never raises and never waits longer than ``timeout_s`` (a dead collector returns ``False``).
    """
    if not isinstance(timeout_s, (int, float)) or timeout_s < 0:
        raise ValueError(f"flush(): timeout_s must be a number >= 0, got {timeout_s!r}")
    ok = True
    providers: list[Any] = []
    with _state.lock:
        tp = _state.tracer_provider if _state.owned else trace.get_tracer_provider()
        mp = _state.meter_provider if _state.owned else metrics.get_meter_provider()
        providers = [p for p in (tp, mp) if hasattr(p, "force_flush")]
    result: dict[int, bool] = {}

    def run() -> None:
        for index, provider in enumerate(providers):
            try:
                result[index] = bool(provider.force_flush(int(timeout_s * 1000)))
            except Exception as exc:
                report_internal_error("flush", exc)
                result[index] = False

    worker = threading.Thread(target=run, name="modelwatch-flush", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return False
    for index in range(len(providers)):
        ok = ok and result.get(index, False)
    return ok


def _shutdown_pipeline(timeout_s: float) -> None:
    tp, mp, server = _state.tracer_provider, _state.meter_provider, _state.prometheus_server
    _state.tracer_provider = _state.meter_provider = _state.prometheus_server = None
    _state.owned = False

    def run() -> None:
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
        if server is not None:
            try:
                httpd, thread = server
                httpd.shutdown()
                httpd.server_close()
                thread.join(timeout_s)
            except Exception as exc:
                report_internal_error("shutdown", exc)

    worker = threading.Thread(target=run, name="modelwatch-shutdown", daemon=True)
    worker.start()
    worker.join(timeout_s)


def shutdown() -> None:
    """Flush and stop everything :func:`configure` started. Never raises; bounded in time."""
    with _state.lock:
        if _state.owned:
            _shutdown_pipeline(timeout_s=EXPORT_TIMEOUT_S)
        _state.config = None
        _telemetry.set_configured_providers(None, None)


def _at_exit() -> None:
    try:
        with _state.lock:
            if _state.owned:
                _shutdown_pipeline(timeout_s=EXIT_TIMEOUT_S)
    except Exception:  # noqa: S110 - interpreter teardown: stay silent
        pass
