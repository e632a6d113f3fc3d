"""The OpenTelemetry environment conventions (issue 13), each in a fresh process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.fresh import run_fresh
from support.otlp import OtlpReceiver
from support.servers import free_port

CALL = """
import json, modelwatch
config = modelwatch.configure({args})
with modelwatch.monitored(model="m", provider="p"):
    pass
flushed = modelwatch.flush(timeout_s=10)
"""


def test_otel_resource_attributes_service_name(otlp_receiver: OtlpReceiver) -> None:
    run_fresh(
        CALL.format(args="") + "print(json.dumps({}))",
        env={
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=svc-b,team=ml",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint,
        },
    )
    (span,) = otlp_receiver.wait_for_spans(1, name="chat m")
    assert span.resource["service.name"] == "svc-b"
    assert span.resource["team"] == "ml"


@pytest.mark.parametrize("signal", ["traces", "metrics"])
def test_a_signal_specific_endpoint_alone_builds_that_exporter(
    otlp_receiver: OtlpReceiver, signal: str
) -> None:
    url = otlp_receiver.traces_url if signal == "traces" else otlp_receiver.metrics_url
    ran = run_fresh(
        CALL.format(args="") + "print(json.dumps({'flushed': flushed}))",
        env={f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT": url},
    )
    assert ran.out == {"flushed": True}
    if signal == "traces":
        otlp_receiver.wait_for_spans(1, name="chat m")
        assert otlp_receiver.requests("metrics") == []
    else:
        otlp_receiver.wait_for_metric("gen_ai.client.operation.duration")
        assert otlp_receiver.requests("traces") == []


def test_otel_traces_sampler_always_off(otlp_receiver: OtlpReceiver) -> None:
    ran = run_fresh(
        CALL.format(args=f"otlp_endpoint={otlp_receiver.http_endpoint!r}")
        + "print(json.dumps({'sampler': config.sampler}))",
        env={"OTEL_TRACES_SAMPLER": "always_off"},
    )
    assert ran.out == {"sampler": "always_off"}
    otlp_receiver.wait_for_metric("gen_ai.client.operation.duration")  # metrics still go
    assert otlp_receiver.spans() == []


def test_http_json_is_refused_clearly() -> None:
    ran = run_fresh(
        """
        import json, modelwatch
        try:
            modelwatch.configure(otlp_endpoint="http://127.0.0.1:4318")
            error = None
        except modelwatch.ConfigurationError as exc:
            error = str(exc)
        print(json.dumps({"error": error}))
        """,
        env={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
    )
    assert ran.out["error"].startswith("OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' is not supported")


def test_export_timeout_and_metric_interval_from_the_environment() -> None:
    ran = run_fresh(
        """
        import json, modelwatch
        from modelwatch import _config
        config = modelwatch.configure(otlp_endpoint="http://127.0.0.1:4318")
        mp = _config._state.meter_provider
        (reader,) = list(mp._all_metric_readers)
        exporter = reader._exporter._inner
        print(json.dumps({"interval_ms": reader._export_interval_millis,
                          "export_timeout_ms": reader._export_timeout_millis,
                          "exporter_timeout_s": exporter._client._timeout,
                          "config": [config.export_timeout_s, config.metric_export_interval_s]}))
        modelwatch.shutdown()
        """,
        env={"OTEL_EXPORTER_OTLP_TIMEOUT": "3", "OTEL_METRIC_EXPORT_INTERVAL": "2500"},
    )
    assert ran.out == {
        "interval_ms": 2500.0,
        "export_timeout_ms": 3000.0,
        "exporter_timeout_s": 3.0,
        "config": [3.0, 2.5],
    }


def test_otel_sdk_disabled_builds_and_serves_nothing(otlp_receiver: OtlpReceiver) -> None:
    port = free_port()
    ran = run_fresh(
        CALL.format(args=f"prometheus_port={port}, otlp_endpoint={otlp_receiver.http_endpoint!r}")
        + "print(json.dumps({'disabled': config.disabled, 'port': config.prometheus_port}))",
        env={"OTEL_SDK_DISABLED": "true"},
    )
    assert ran.out == {"disabled": True, "port": None}
    with socket.socket() as probe:  # nobody listens there
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert otlp_receiver.requests() == []


def test_flush_never_duplicates_a_host_prometheus_reader() -> None:
    # what opentelemetry-instrument with OTEL_METRICS_EXPORTER=prometheus installs: the stock
    # PrometheusMetricReader, which queues one snapshot per force_flush
    ran = run_fresh(
        """
        import json, urllib.request, modelwatch
        from opentelemetry import metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import CollectorRegistry, start_http_server
        registry = CollectorRegistry()
        metrics.set_meter_provider(MeterProvider([PrometheusMetricReader(registry=registry)]))
        server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
        modelwatch.configure()
        with modelwatch.monitored(model="m", provider="p"):
            pass
        modelwatch.flush()
        modelwatch.flush()
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        name = "gen_ai_client_operation_duration_seconds_count"
        print(json.dumps({"counts": [l for l in text.splitlines() if l.startswith(name)]}))
        """
    )
    assert len(ran.out["counts"]) == 1, ran.out["counts"]


def test_system_metrics_are_recorded() -> None:
    pytest.importorskip("opentelemetry.instrumentation.system_metrics")
    ran = run_fresh(
        """
        import json, urllib.request, modelwatch
        config = modelwatch.configure(prometheus_port=0, system_metrics=True)
        url = f"http://127.0.0.1:{config.prometheus_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        names = sorted({l.split("{")[0].split(" ")[0] for l in text.splitlines()
                        if l and not l.startswith("#")})
        modelwatch.shutdown()
        print(json.dumps({"names": names}))
        """
    )
    names = set(ran.out["names"])
    for prefix in ("system_cpu_", "system_memory_", "system_disk_", "system_network_", "process_"):
        assert any(n.startswith(prefix) for n in names), (prefix, sorted(names))


def test_under_opentelemetry_instrument_flush_never_duplicates_series(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.distro")
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    if not instrument.exists():
        pytest.skip("opentelemetry-instrument is not installed (pip install opentelemetry-distro)")
    port = free_port()
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            f"""
            import json, urllib.request, modelwatch
            with modelwatch.monitored(model="m", provider="p"):
                pass
            modelwatch.flush()
            modelwatch.flush()
            url = "http://127.0.0.1:{port}/metrics"
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            name = "gen_ai_client_operation_duration_seconds_count"
            print(json.dumps({{"counts": [l for l in text.splitlines() if l.startswith(name)]}}))
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWATCH_", "OTEL_"))}
    env.update(
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_TRACES_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(port),
    )
    proc = subprocess.run(
        [str(instrument), sys.executable, str(app)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])["counts"]
    assert len(counts) == 1, counts  # was 6 before the fix (issue 13)


def test_otel_signal_exporter_none_turns_that_signal_off(otlp_receiver: OtlpReceiver) -> None:
    ran = run_fresh(
        CALL.format(args="") + "print(json.dumps({'flushed': flushed}))",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint,
            "OTEL_TRACES_EXPORTER": "none",
        },
    )
    assert ran.out == {"flushed": True}
    otlp_receiver.wait_for_metric("gen_ai.client.operation.duration")
    assert otlp_receiver.requests("traces") == []
