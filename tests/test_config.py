"""configure(): resolution order, loud errors, export over OTLP (HTTP and gRPC) to a real
receiver, the Prometheus endpoint, host providers, idempotence, exit flush and fork safety.

OpenTelemetry's global providers can be set once per process, so everything that installs
them runs in a fresh interpreter (``run_python``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import modelwatch
from modelwatch import ConfigurationError
from modelwatch._config import resolve
from support.fresh import CLEAN_ENV_PREFIXES, run_fresh
from support.otlp import BlackholeEndpoint, DeadEndpoint, OtlpReceiver


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last, which is returned."""
    return run_fresh(code, env, timeout).out


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith(CLEAN_ENV_PREFIXES):
            monkeypatch.delenv(key)
    return monkeypatch


# ------------------------------------------------------------------ resolution and errors
def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    config = resolve()
    assert config.service_name == "unknown_service"
    assert config.otlp_endpoint is None
    assert config.otlp_protocol == "http/protobuf"
    assert config.prometheus_port is None
    assert config.sample_ratio == 1.0
    assert config.capture_content is False


def test_explicit_beats_modelwatch_env_beats_otel_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_SERVICE_NAME", "from-otel")
    assert resolve().service_name == "from-otel"
    clean_env.setenv("MODELWATCH_SERVICE_NAME", "from-modelwatch")
    assert resolve().service_name == "from-modelwatch"
    assert resolve(service_name="explicit").service_name == "explicit"

    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318")
    clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert resolve().otlp_endpoint == "http://otel:4318"
    assert resolve().otlp_protocol == "grpc"
    clean_env.setenv("MODELWATCH_OTLP_ENDPOINT", "http://mw:4318/")
    assert resolve().otlp_endpoint == "http://mw:4318"
    assert resolve(otlp_protocol="http/protobuf").otlp_protocol == "http/protobuf"


def test_sample_ratio_from_otel_sampler_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    assert resolve().sample_ratio == 1.0  # the ARG alone means nothing without a ratio sampler
    clean_env.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    assert resolve().sample_ratio == 0.25
    clean_env.setenv("MODELWATCH_SAMPLE_RATIO", "0.5")
    assert resolve().sample_ratio == 0.5


def test_capture_content_from_the_genai_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    assert resolve().capture_content is True
    assert resolve(capture_content=False).capture_content is False


def test_prices_from_env_json_and_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("MODELWATCH_PRICES", '{"my/model": {"per_request": 0.01}}')
    assert resolve().prices["my/model"].per_request == 0.01
    path = tmp_path / "prices.json"
    path.write_text('{"other/model": {"input_per_1k": 0.5}}')
    clean_env.setenv("MODELWATCH_PRICES", str(path))
    assert resolve().prices["other/model"].input_per_1k == 0.5


@pytest.mark.parametrize(
    ("kwargs", "env", "fragment"),
    [
        ({"otlp_protocol": "udp"}, {}, "otlp_protocol: expected one of ['http/protobuf', 'grpc']"),
        ({}, {"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"otlp_endpoint": "collector:4317"}, {}, "otlp_endpoint: expected an http(s) URL"),
        ({}, {"MODELWATCH_OTLP_ENDPOINT": "ftp://x"}, "MODELWATCH_OTLP_ENDPOINT"),
        ({"prometheus_port": 70000}, {}, "prometheus_port: expected a port number 0..65535"),
        ({}, {"MODELWATCH_PROMETHEUS_PORT": "http"}, "MODELWATCH_PROMETHEUS_PORT"),
        ({"sample_ratio": 1.5}, {}, "sample_ratio: expected a number from 0.0 to 1.0"),
        ({}, {"MODELWATCH_SAMPLE_RATIO": "most"}, "MODELWATCH_SAMPLE_RATIO"),
        ({"service_name": "  "}, {}, "service_name: expected a non-empty string"),
        ({"capture_content": "maybe"}, {}, "capture_content: expected true/false"),
        ({}, {"MODELWATCH_CAPTURE_CONTENT": "perhaps"}, "MODELWATCH_CAPTURE_CONTENT"),
        ({"prices": {"m": {"per_call": 1}}}, {}, "unknown key"),
        ({}, {"MODELWATCH_PRICES": "{not json"}, "MODELWATCH_PRICES: invalid JSON"),
    ],
)
def test_invalid_settings_fail_loudly_at_configure(
    clean_env: pytest.MonkeyPatch, kwargs: dict[str, Any], env: dict[str, str], fragment: str
) -> None:
    for key, value in env.items():
        clean_env.setenv(key, value)
    with pytest.raises(ConfigurationError) as raised:
        modelwatch.configure(**kwargs)
    assert fragment in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert modelwatch._config.current_config() is None  # nothing was applied


def test_flush_rejects_a_bad_timeout() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        modelwatch.flush(timeout_s=-1)


# ------------------------------------------------------------------ export, for real
CALL_AND_FLUSH = """
import json, os, modelwatch
config = modelwatch.configure({args})
@modelwatch.monitored(model="google/flan-t5-large", provider="huggingface", analysis="code_review")
def review(code):
    modelwatch.current_call().record_usage(input_tokens=11, output_tokens=3)
    return "ok"
assert review("x = 1") == "ok"
ok = modelwatch.flush(timeout_s=10)
print(json.dumps({{"flushed": ok, "port": config.prometheus_port, "host": config.host_providers}}))
"""


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_otlp_export_reaches_a_real_receiver(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    endpoint = (
        otlp_receiver.http_endpoint if protocol == "http/protobuf" else otlp_receiver.grpc_endpoint
    )
    if not endpoint.startswith("http"):
        endpoint = f"http://{endpoint}"
    args = f"service_name='ai-engine', otlp_endpoint={endpoint!r}, otlp_protocol={protocol!r}"
    out = run_python(CALL_AND_FLUSH.format(args=args))
    assert out["flushed"] is True
    (span,) = otlp_receiver.wait_for_spans(1, name="chat google/flan-t5-large")
    assert span.attributes["gen_ai.usage.input_tokens"] == 11
    assert span.resource["service.name"] == "ai-engine"
    points = otlp_receiver.wait_for_metric("gen_ai.client.operation.duration")
    assert points[0].attributes["modelwatch.analysis"] == "code_review"
    assert list(points[0].explicit_bounds)[:3] == [0.01, 0.02, 0.04]


def test_unsampled_traces_still_record_metrics(otlp_receiver: OtlpReceiver) -> None:
    args = f"otlp_endpoint={otlp_receiver.http_endpoint!r}, sample_ratio=0.0"
    run_python(CALL_AND_FLUSH.format(args=args))
    points = otlp_receiver.wait_for_metric("gen_ai.client.token.usage")
    # cumulative points, exported at flush and again at exit: each says 11 input, 3 output
    assert {p.sum for p in points} == {11.0, 3.0}
    assert otlp_receiver.spans() == []


def test_exit_flushes_without_an_explicit_flush(otlp_receiver: OtlpReceiver) -> None:
    run_python(
        f"""
        import modelwatch
        modelwatch.configure(otlp_endpoint={otlp_receiver.http_endpoint!r})
        with modelwatch.monitored(model="m", provider="p"):
            pass
        """
    )
    (span,) = otlp_receiver.wait_for_spans(1, name="chat m")
    assert span.attributes["gen_ai.request.model"] == "m"


def test_forked_child_exports_its_own_telemetry(otlp_receiver: OtlpReceiver) -> None:
    out = run_python(
        f"""
        import json, os, modelwatch
        modelwatch.configure(otlp_endpoint={otlp_receiver.http_endpoint!r})
        with modelwatch.monitored(model="m", provider="p") as call:
            call.set_attribute("pid", os.getpid())
        modelwatch.flush()
        pid = os.fork()
        if pid == 0:
            with modelwatch.monitored(model="m", provider="p") as call:
                call.set_attribute("pid", os.getpid())
            os._exit(0 if modelwatch.flush(timeout_s=10) else 3)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({{"parent": os.getpid(), "child": pid, "status": status}}))
        """
    )
    assert out["status"] == 0
    spans = otlp_receiver.wait_for_spans(2, name="chat m")
    assert {s.attributes["pid"] for s in spans} == {out["parent"], out["child"]}


def test_prometheus_endpoint_serves_the_metrics() -> None:
    out = run_python(
        """
        import json, urllib.request, modelwatch
        config = modelwatch.configure(prometheus_port=0)
        with modelwatch.monitored(model="google/flan-t5-large", provider="huggingface") as call:
            call.record_usage(5, 6)
        modelwatch.flush()  # a flush must not queue snapshots that a scrape then repeats
        modelwatch.flush()
        url = f"http://127.0.0.1:{config.prometheus_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        modelwatch.shutdown()
        print(json.dumps({"text": text}))
        """
    )
    text = out["text"]
    assert "gen_ai_client_operation_duration_seconds_bucket{" in text
    assert 'le="0.01"' in text
    assert 'le="81.92"' in text
    assert "gen_ai_client_token_usage_bucket{" in text
    assert "modelwatch_cost_usd_total{" in text
    assert 'gen_ai_request_model="google/flan-t5-large"' in text
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(series) == len(set(series)), "duplicate series on the /metrics page"


def test_host_providers_are_used_never_replaced() -> None:
    out = run_python(
        """
        import json, modelwatch
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        host = TracerProvider()
        host.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(host)
        first = modelwatch.configure(service_name="svc")
        second = modelwatch.configure(service_name="svc")
        with modelwatch.monitored(model="m", provider="p"):
            pass
        print(json.dumps({
            "host": first.host_providers,
            "same": first is second,
            "still_host": trace.get_tracer_provider() is host,
            "spans": [s.name for s in exporter.get_finished_spans()],
        }))
        """
    )
    assert out == {"host": True, "same": True, "still_host": True, "spans": ["chat m"]}


def test_configure_twice_same_settings_is_a_no_op_and_new_settings_apply(
    otlp_receiver: OtlpReceiver,
) -> None:
    out = run_python(
        f"""
        import json, modelwatch
        a = modelwatch.configure(service_name="one")
        b = modelwatch.configure(service_name="one")
        c = modelwatch.configure(service_name="two", otlp_endpoint={otlp_receiver.http_endpoint!r})
        with modelwatch.monitored(model="m", provider="p"):
            pass
        flushed = modelwatch.flush()
        print(json.dumps({{"same": a is b, "changed": c.service_name, "flushed": flushed}}))
        """
    )
    assert out == {"same": True, "changed": "two", "flushed": True}
    (span,) = otlp_receiver.wait_for_spans(1, name="chat m")
    assert span.resource["service.name"] == "two"


@pytest.mark.parametrize("kind", ["closed", "blackhole"])
def test_dead_endpoint_never_raises_or_changes_results(
    kind: str, dead_endpoint_closed: DeadEndpoint, dead_endpoint_blackhole: BlackholeEndpoint
) -> None:
    url = dead_endpoint_closed.url if kind == "closed" else dead_endpoint_blackhole.url
    out = run_python(
        f"""
        import json, modelwatch
        modelwatch.configure(otlp_endpoint={url!r})
        @modelwatch.monitored(model="m", provider="p")
        def f(i):
            return i * 2
        results = [f(i) for i in range(200)]
        flushed = modelwatch.flush(timeout_s=0.5)
        print(json.dumps({{"ok": results == [i * 2 for i in range(200)], "flushed": flushed}}))
        """,
        timeout=60,
    )
    assert out == {"ok": True, "flushed": False}
