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
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import structlog
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from modelwatch._safety import log_due, report_internal_error
from modelwatch.capture import _settings, _telemetry
from modelwatch.capture.cost import Price, parse_prices, set_prices
from modelwatch.errors import ConfigurationError

logger = structlog.get_logger("modelwatch")

PROTOCOLS: Final = ("http/protobuf", "grpc")
DEFAULT_SERVICE_NAME: Final = "unknown_service"
DEFAULT_PROTOCOL: Final = "http/protobuf"
#: Spans buffered for export at most; beyond it they are dropped and counted, never blocking.
SPAN_QUEUE_SIZE: Final = 2048
#: How long one export may take before it is abandoned (a dead collector costs this, off-thread).
EXPORT_TIMEOUT_S: Final = 5.0
METRIC_EXPORT_INTERVAL_S: Final = 10.0
#: The most interpreter exit waits for the last export (a dead collector cannot hold it longer).
EXIT_TIMEOUT_S: Final = 2.0
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Config:
    """The settings in force after :func:`configure`, each already resolved and validated.

    ``prometheus_port`` is the port actually bound (useful with ``prometheus_port=0``);
    ``host_providers`` is true when the host's own SDK providers are in use.
    """

    service_name: str = DEFAULT_SERVICE_NAME
    otlp_endpoint: str | None = None
    otlp_protocol: str = DEFAULT_PROTOCOL
    prometheus_port: int | None = None
    prometheus_host: str = "127.0.0.1"
    console: bool = False
    capture_content: bool = False
    prices: Mapping[str, Price] = field(default_factory=dict)
    sample_ratio: float = 1.0
    host_providers: bool = False


# ----------------------------------------------------------------------- resolution helpers
def _env(*names: str) -> tuple[str, str] | None:
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip() != "":
            return name, value.strip()
    return None


def _bool(setting: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ConfigurationError(
        f"{setting}: expected true/false (or 1/0, yes/no, on/off), got {value!r}"
    )


def _endpoint(setting: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{setting}: expected an http(s) URL, got {value!r}")
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigurationError(
            f"{setting}: expected an http(s) URL such as http://127.0.0.1:4318, got {value!r}"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"{setting}: invalid port in {value!r}") from exc
    return value.strip().rstrip("/")


def _protocol(setting: str, value: object) -> str:
    if value not in PROTOCOLS:
        raise ConfigurationError(f"{setting}: expected one of {list(PROTOCOLS)}, got {value!r}")
    assert isinstance(value, str)
    return value


def _port(setting: str, value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigurationError(
            f"{setting}: expected a port number 0..65535 (0 picks a free port), got {value!r}"
        )
    return value


def _ratio(setting: str, value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigurationError(
                f"{setting}: expected a number from 0.0 to 1.0, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"{setting}: expected a number from 0.0 to 1.0, got {value!r}")
    return float(value)


def _service_name(setting: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{setting}: expected a non-empty string, got {value!r}")
    return value.strip()


def _prices(setting: str, value: object) -> dict[str, Price]:
    if isinstance(value, str):
        text = value
        if not value.lstrip().startswith("{"):
            try:
                text = Path(value).read_text("utf-8")
            except OSError as exc:
                raise ConfigurationError(
                    f"{setting}: expected JSON or the path of a JSON file; "
                    f"cannot read {value!r}: {exc}"
                ) from exc
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{setting}: invalid JSON: {exc}") from exc
    try:
        return parse_prices(value, setting=setting)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc


def _resolve(
    explicit: object, argument: str, envs: tuple[str, ...], default: Any, check: Any
) -> Any:
    if explicit is not None:
        return check(argument, explicit)
    found = _env(*envs)
    if found is not None:
        return check(found[0], found[1])
    return default


def _sample_ratio_from_otel_env() -> tuple[str, ...]:
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler in {"traceidratio", "parentbased_traceidratio"}:
        return ("OTEL_TRACES_SAMPLER_ARG",)
    return ()


def resolve(
    *,
    service_name: str | None = None,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    prometheus_port: int | None = None,
    console: bool | None = None,
    capture_content: bool | None = None,
    prices: Mapping[str, Mapping[str, float]] | None = None,
    sample_ratio: float | None = None,
) -> Config:
    """Resolve and validate every setting without applying anything."""
    return Config(
        service_name=_resolve(
            service_name,
            "service_name",
            ("MODELWATCH_SERVICE_NAME", "OTEL_SERVICE_NAME"),
            DEFAULT_SERVICE_NAME,
            _service_name,
        ),
        otlp_endpoint=_resolve(
            otlp_endpoint,
            "otlp_endpoint",
            ("MODELWATCH_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
            None,
            _endpoint,
        ),
        otlp_protocol=_resolve(
            otlp_protocol,
            "otlp_protocol",
            ("MODELWATCH_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
            DEFAULT_PROTOCOL,
            _protocol,
        ),
        prometheus_port=_resolve(
            prometheus_port, "prometheus_port", ("MODELWATCH_PROMETHEUS_PORT",), None, _port
        ),
        prometheus_host=_resolve(
            None, "prometheus_host", ("MODELWATCH_PROMETHEUS_HOST",), "127.0.0.1", _service_name
        ),
        console=_resolve(
            console if console else None, "console", ("MODELWATCH_CONSOLE",), False, _bool
        ),
        capture_content=_resolve(
            capture_content,
            "capture_content",
            ("MODELWATCH_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"),
            False,
            _bool,
        ),
        prices=_resolve(prices, "prices", ("MODELWATCH_PRICES",), {}, _prices),
        sample_ratio=_resolve(
            sample_ratio,
            "sample_ratio",
            ("MODELWATCH_SAMPLE_RATIO", *_sample_ratio_from_otel_env()),
            1.0,
            _ratio,
        ),
    )


# ----------------------------------------------------------------------- export pipeline
class _BoundedBatchSpanProcessor(BatchSpanProcessor):
    """A batch processor that drops spans when its queue is full and *counts* the drops,
    logging one rate-limited warning instead of one line per dropped span."""

    dropped: int = 0

    def on_end(self, span: ReadableSpan) -> None:
        queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)
        if queue is not None and len(queue) >= SPAN_QUEUE_SIZE:
            type(self).dropped += 1
            if log_due("export_queue_full"):  # the message is built only when it is logged
                report_internal_error(
                    "export_queue_full",
                    RuntimeError(
                        f"span export queue full ({SPAN_QUEUE_SIZE}); "
                        f"{type(self).dropped} span(s) dropped so far"
                    ),
                )
            return
        super().on_end(span)


def _span_line(span: ReadableSpan) -> str:
    """One readable line per span for ``console=True`` (the SDK's default is pages of JSON)."""
    start, end = span.start_time or 0, span.end_time or 0
    attrs = " ".join(f"{k}={v!r}" for k, v in (span.attributes or {}).items())
    status = "" if span.status.is_ok else f" status={span.status.status_code.name}"
    return f"[modelwatch span] {span.name} {(end - start) / 1e6:.1f}ms{status} {attrs}\n"


def _metrics_lines(data: Any) -> str:
    """One readable line per metric point for ``console=True``."""
    lines = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    attrs = ",".join(f"{k}={v}" for k, v in (point.attributes or {}).items())
                    if hasattr(point, "bucket_counts"):
                        value = f"count={point.count} sum={point.sum:.6g}"
                    else:
                        value = f"value={point.value:.6g}"
                    lines.append(f"[modelwatch metric] {metric.name}{{{attrs}}} {value}\n")
    return "".join(lines)


def _otlp_exporters(config: Config) -> tuple[Any, Any]:
    endpoint = config.otlp_endpoint
    assert endpoint is not None
    if config.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        insecure = endpoint.startswith("http://")
        return (
            GrpcSpanExporter(endpoint=endpoint, insecure=insecure, timeout=EXPORT_TIMEOUT_S),
            GrpcMetricExporter(endpoint=endpoint, insecure=insecure, timeout=EXPORT_TIMEOUT_S),
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=EXPORT_TIMEOUT_S),
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=EXPORT_TIMEOUT_S),
    )


def _prometheus_reader(config: Config) -> tuple[MetricReader, Any, int]:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as exc:
        raise ConfigurationError(
            "prometheus_port needs the optional dependencies: pip install 'modelwatch[prometheus]'"
        ) from exc

    class PullOnlyPrometheusReader(PrometheusMetricReader):
        """A scrape pulls; a flush must not. The stock reader queues one snapshot per
        ``force_flush`` and the next scrape prints them all: duplicate series."""

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

    registry = CollectorRegistry()
    reader = PullOnlyPrometheusReader(disable_target_info=False, registry=registry)
    assert config.prometheus_port is not None
    try:
        server, thread = start_http_server(
            config.prometheus_port, addr=config.prometheus_host, registry=registry
        )
    except OSError as exc:
        raise ConfigurationError(
            f"prometheus_port: cannot listen on "
            f"{config.prometheus_host}:{config.prometheus_port}: {exc}"
        ) from exc
    return reader, (server, thread), int(server.server_port)


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
