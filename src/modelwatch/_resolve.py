"""Settings for :func:`modelwatch.configure`: :class:`Config` and their resolution.

Explicit argument > ``MODELWATCH_*`` env > standard ``OTEL_*`` env > default; an invalid
value raises :class:`ConfigurationError` naming the setting, the value and what is accepted.
Resolving applies nothing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypedDict, Unpack
from urllib.parse import urlsplit

from modelwatch.capture import _settings
from modelwatch.capture.cost import Price, parse_prices
from modelwatch.errors import ConfigurationError

PROTOCOLS: Final = ("http/protobuf", "grpc")
#: ``OTEL_TRACES_SAMPLER`` values (the SDK's own names).
SAMPLERS: Final = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
DEFAULT_SAMPLER: Final = "parentbased_traceidratio"
#: How long one export may take before it is abandoned, unless ``OTEL_EXPORTER_OTLP_TIMEOUT``.
DEFAULT_EXPORT_TIMEOUT_S: Final = 5.0
#: Between two metric exports, unless ``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds) says.
DEFAULT_METRIC_EXPORT_INTERVAL_S: Final = 10.0
DEFAULT_SERVICE_NAME: Final = "unknown_service"
DEFAULT_PROTOCOL: Final = "http/protobuf"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Config:
    """The settings in force after :func:`configure`, each already resolved and validated.

    ``prometheus_port`` is the port actually bound by this process (useful with ``0`` or a
    range), ``None`` when it serves no ``/metrics``; ``prometheus_ports`` is the range asked
    for, ``(first, last)``. ``otlp_traces_endpoint`` / ``otlp_metrics_endpoint`` are the full
    export URLs (HTTP) or addresses (gRPC) per signal. ``host_providers`` is true when the
    host's own SDK providers are in use; ``disabled`` when ``OTEL_SDK_DISABLED=true``.
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
    prometheus_ports: tuple[int, int] | None = None
    prometheus_sd_dir: str | None = None
    otlp_traces_endpoint: str | None = None
    otlp_metrics_endpoint: str | None = None
    export_timeout_s: float = DEFAULT_EXPORT_TIMEOUT_S
    metric_export_interval_s: float = DEFAULT_METRIC_EXPORT_INTERVAL_S
    sampler: str = DEFAULT_SAMPLER
    system_metrics: bool = False
    disabled: bool = False


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
    if value == "http/json":
        raise ConfigurationError(
            f"{setting}: 'http/json' is not supported: the OpenTelemetry Python exporters "
            f"send OTLP as protobuf only; use 'http/protobuf' (port 4318) or 'grpc' (port 4317)"
        )
    if value not in PROTOCOLS:
        raise ConfigurationError(f"{setting}: expected one of {list(PROTOCOLS)}, got {value!r}")
    assert isinstance(value, str)
    return value


def _positive_seconds(scale: float) -> Any:
    def check(setting: str, value: object) -> float:
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
        if (
            isinstance(number, bool)
            or not isinstance(number, (int, float))
            or not math.isfinite(number)
            or number <= 0
        ):
            unit = "milliseconds" if scale != 1.0 else "seconds"
            raise ConfigurationError(f"{setting}: expected a number of {unit} > 0, got {value!r}")
        return float(number) * scale

    return check


def _sampler(setting: str, value: object) -> str:
    lowered = value.strip().lower() if isinstance(value, str) else value
    if lowered not in SAMPLERS:
        raise ConfigurationError(f"{setting}: expected one of {list(SAMPLERS)}, got {value!r}")
    assert isinstance(lowered, str)
    return lowered


def _directory(setting: str, value: object) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConfigurationError(f"{setting}: expected a directory path, got {value!r}")
    return str(value).strip()


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
    if isinstance(value, Mapping):
        for model, entry in value.items():
            for key, number in entry.items() if isinstance(entry, Mapping) else ():
                if isinstance(number, float) and not math.isfinite(number):
                    raise ConfigurationError(
                        f"{setting}[{model!r}][{key!r}] must be a finite number >= 0 (USD), "
                        f"got {number!r}"
                    )
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


def _service_name_from_resource_env() -> tuple[str, str] | None:
    """``service.name`` out of ``OTEL_RESOURCE_ATTRIBUTES``, parsed as the SDK parses it."""
    if "service.name" not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        return None
    from opentelemetry.sdk.resources import OTELResourceDetector

    saved = os.environ.pop("OTEL_SERVICE_NAME", None)  # only the attribute, here
    try:
        name = OTELResourceDetector().detect().attributes.get("service.name")
    finally:
        if saved is not None:
            os.environ["OTEL_SERVICE_NAME"] = saved
    return ("OTEL_RESOURCE_ATTRIBUTES", str(name)) if name else None


def _sampling(sample_ratio: float | None) -> tuple[str, float]:
    """(sampler name, ratio): ``sample_ratio`` > ``MODELWATCH_SAMPLE_RATIO`` >
    ``OTEL_TRACES_SAMPLER`` (+ ``OTEL_TRACES_SAMPLER_ARG``) > parent-based, everything."""
    if sample_ratio is not None:
        return DEFAULT_SAMPLER, _ratio("sample_ratio", sample_ratio)
    found = _env("MODELWATCH_SAMPLE_RATIO")
    if found is not None:
        return DEFAULT_SAMPLER, _ratio(*found)
    found = _env("OTEL_TRACES_SAMPLER")
    if found is None:
        return DEFAULT_SAMPLER, 1.0
    sampler = _sampler(*found)
    ratio = {"always_off": 0.0, "parentbased_always_off": 0.0}.get(sampler, 1.0)
    if sampler.endswith("traceidratio"):
        arg = _env("OTEL_TRACES_SAMPLER_ARG")
        ratio = _ratio(*arg) if arg is not None else 1.0
    return sampler, ratio


def _otlp_signal_endpoints(
    base: str | None, explicit_base: bool, protocol: str
) -> tuple[str | None, str | None]:
    """Full per-signal endpoints: a base URL (argument, ``MODELWATCH_OTLP_ENDPOINT``) gets
    ``/v1/traces`` and ``/v1/metrics`` (HTTP); otherwise ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT``
    is used as it is, then ``OTEL_EXPORTER_OTLP_ENDPOINT`` as a base (the OTel rules).
    ``OTEL_<SIGNAL>_EXPORTER=none`` turns that signal's export off."""

    def one(signal: str) -> str | None:
        exporters = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp").lower()
        if {e.strip() for e in exporters.split(",")} <= {"none", ""}:
            return None  # OTEL_TRACES_EXPORTER=none / OTEL_METRICS_EXPORTER=none
        if not explicit_base:
            name = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
            found = _env(name)
            if found is not None:
                return _endpoint(*found)
        if base is None:
            return None
        return base if protocol == "grpc" else f"{base}/v1/{signal}"

    return one("traces"), one("metrics")


class Settings(TypedDict, total=False):
    """The keyword arguments of :func:`modelwatch.configure` (``None``: not given)."""

    service_name: str | None
    otlp_endpoint: str | None
    otlp_protocol: str | None
    prometheus_port: int | str | None
    console: bool | None
    capture_content: bool | None
    prices: Mapping[str, Mapping[str, float]] | None
    sample_ratio: float | None
    prometheus_sd_dir: str | None
    system_metrics: bool | None


def resolve(**settings: Unpack[Settings]) -> Config:
    """Resolve and validate every setting (the arguments of :func:`modelwatch.configure`)
    without applying anything."""
    from modelwatch._fleet import parse_ports

    service_name = settings.get("service_name")
    otlp_endpoint = settings.get("otlp_endpoint")
    prometheus_port = settings.get("prometheus_port")
    console = settings.get("console")

    explicit_base = otlp_endpoint is not None or _env("MODELWATCH_OTLP_ENDPOINT") is not None
    endpoint = _resolve(
        otlp_endpoint,
        "otlp_endpoint",
        ("MODELWATCH_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        None,
        _endpoint,
    )
    protocol = _resolve(
        settings.get("otlp_protocol"),
        "otlp_protocol",
        ("MODELWATCH_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        DEFAULT_PROTOCOL,
        _protocol,
    )
    traces_endpoint, metrics_endpoint = _otlp_signal_endpoints(endpoint, explicit_base, protocol)
    sampler, ratio = _sampling(settings.get("sample_ratio"))
    name = service_name
    if name is None and _env("MODELWATCH_SERVICE_NAME", "OTEL_SERVICE_NAME") is None:
        found = _service_name_from_resource_env()
        name = found[1] if found else None
    ports = _resolve(
        prometheus_port, "prometheus_port", ("MODELWATCH_PROMETHEUS_PORT",), None, parse_ports
    )
    return Config(
        service_name=_resolve(
            name,
            "service_name",
            ("MODELWATCH_SERVICE_NAME", "OTEL_SERVICE_NAME"),
            DEFAULT_SERVICE_NAME,
            _service_name,
        ),
        otlp_endpoint=endpoint,
        otlp_protocol=protocol,
        otlp_traces_endpoint=traces_endpoint,
        otlp_metrics_endpoint=metrics_endpoint,
        prometheus_port=None,
        prometheus_ports=ports,
        prometheus_host=_resolve(
            None, "prometheus_host", ("MODELWATCH_PROMETHEUS_HOST",), "127.0.0.1", _service_name
        ),
        prometheus_sd_dir=_resolve(
            settings.get("prometheus_sd_dir"),
            "prometheus_sd_dir",
            ("MODELWATCH_PROMETHEUS_SD_DIR",),
            None,
            _directory,
        ),
        console=_resolve(
            console if console else None, "console", ("MODELWATCH_CONSOLE",), False, _bool
        ),
        capture_content=_resolve(
            settings.get("capture_content"),
            "capture_content",
            _settings.ENVS,
            False,
            _settings.parse_capture_content,  # also util-genai's SPAN_ONLY... values
        ),
        prices=_resolve(settings.get("prices"), "prices", ("MODELWATCH_PRICES",), {}, _prices),
        sample_ratio=ratio,
        sampler=sampler,
        export_timeout_s=_resolve(
            None,
            "export_timeout",
            ("OTEL_EXPORTER_OTLP_TIMEOUT",),  # seconds, as the Python OTLP exporters read it
            DEFAULT_EXPORT_TIMEOUT_S,
            _positive_seconds(1.0),
        ),
        metric_export_interval_s=_resolve(
            None,
            "metric_export_interval",
            ("OTEL_METRIC_EXPORT_INTERVAL",),  # milliseconds
            DEFAULT_METRIC_EXPORT_INTERVAL_S,
            _positive_seconds(0.001),
        ),
        system_metrics=_resolve(
            settings.get("system_metrics"),
            "system_metrics",
            ("MODELWATCH_SYSTEM_METRICS",),
            False,
            _bool,
        ),
        disabled=_resolve(None, "OTEL_SDK_DISABLED", ("OTEL_SDK_DISABLED",), False, _bool),
    )
