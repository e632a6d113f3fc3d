"""Settings for :func:`modelwatch.configure`: :class:`Config` and their resolution.

Explicit argument > ``MODELWATCH_*`` env > standard ``OTEL_*`` env > default; an invalid
value raises :class:`ConfigurationError` naming the setting, the value and what is accepted.
Resolving applies nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from modelwatch.capture.cost import Price, parse_prices
from modelwatch.errors import ConfigurationError

PROTOCOLS: Final = ("http/protobuf", "grpc")
DEFAULT_SERVICE_NAME: Final = "unknown_service"
DEFAULT_PROTOCOL: Final = "http/protobuf"
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
