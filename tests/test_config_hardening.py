"""configure()/flush()/shutdown() hardening (issue 11): a multiprocessing child's telemetry,
flush() on a refusing collector, reconfiguring, configure after shutdown, a failed configure
leaves nothing, bad values named. Each case that installs providers runs in a fresh process."""

from __future__ import annotations

import math
import socket
from typing import Any

import pytest

from modelwatch import ConfigurationError
from modelwatch._config import resolve
from support.failing_collector import FailingCollector, failing_collector  # noqa: F401
from support.fresh import run_fresh
from support.otlp import OtlpReceiver


def test_multiprocessing_child_exports_its_spans_and_metrics(otlp_receiver: OtlpReceiver) -> None:
    # multiprocessing ends a child with os._exit: without modelwatch's finalizer in the child,
    # nothing the child recorded is exported (the parent's atexit does not cover it)
    ran = run_fresh(
        f"""
        import json, multiprocessing, os, modelwatch
        modelwatch.configure(otlp_endpoint={otlp_receiver.http_endpoint!r})

        def work():
            for _ in range(3):
                with modelwatch.monitored(model="m", provider="p") as call:
                    call.set_attribute("pid", os.getpid())

        child = multiprocessing.get_context("fork").Process(target=work)
        child.start()
        child.join(30)
        print(json.dumps({{"child": child.pid, "code": child.exitcode}}))
        os._exit(0)  # the parent exports nothing: what arrives is the child's
        """
    )
    assert ran.out["code"] == 0
    spans = otlp_receiver.wait_for_spans(3, name="chat m")
    assert {s.attributes["pid"] for s in spans} == {ran.out["child"]}
    points = otlp_receiver.wait_for_metric("gen_ai.client.operation.duration")
    assert max(p.count or 0 for p in points) == 3
    assert {p.resource["process.pid"] for p in points} == {ran.out["child"]}


def test_flush_says_false_when_the_collector_answers_500(
    failing_collector: FailingCollector,  # noqa: F811
) -> None:
    ran = run_fresh(
        f"""
        import json, modelwatch
        modelwatch.configure(otlp_endpoint={failing_collector.url!r})
        with modelwatch.monitored(model="m", provider="p"):
            pass
        print(json.dumps({{"flushed": modelwatch.flush(timeout_s=10)}}))
        """
    )
    assert ran.out == {"flushed": False}
    assert failing_collector.posts >= 2  # spans and metrics were both sent and refused


def test_configure_again_without_prometheus_port_keeps_the_endpoint() -> None:
    ran = run_fresh(
        """
        import json, urllib.request, modelwatch
        first = modelwatch.configure(prometheus_port=0, service_name="one")
        second = modelwatch.configure(service_name="two")
        with modelwatch.monitored(model="m", provider="p"):
            pass
        url = f"http://127.0.0.1:{first.prometheus_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        print(json.dumps({"first": first.prometheus_port, "second": second.prometheus_port,
                          "served": "gen_ai_client_operation_duration_seconds_count" in text,
                          "service": 'service_name="two"' in text}))
        """
    )
    assert ran.out["second"] == ran.out["first"]
    assert ran.out["served"] is True
    assert ran.out["service"] is True
    assert "modelwatch.configure.prometheus_kept" in ran.stdout + ran.stderr


def test_configure_after_shutdown_builds_a_working_pipeline(otlp_receiver: OtlpReceiver) -> None:
    ran = run_fresh(
        f"""
        import json, urllib.request, modelwatch
        modelwatch.configure(otlp_endpoint={otlp_receiver.http_endpoint!r}, service_name="a")
        modelwatch.shutdown()
        config = modelwatch.configure(
            otlp_endpoint={otlp_receiver.http_endpoint!r}, service_name="b", prometheus_port=0)
        with modelwatch.monitored(model="m", provider="p"):
            pass
        url = f"http://127.0.0.1:{{config.prometheus_port}}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        print(json.dumps({{"flushed": modelwatch.flush(timeout_s=10), "host": config.host_providers,
                          "served": "gen_ai_client_operation_duration_seconds_count" in text}}))
        """
    )
    assert ran.out == {"flushed": True, "host": False, "served": True}
    assert "shutdown MeterProvider" not in ran.stderr + ran.stdout
    (span,) = otlp_receiver.wait_for_spans(1, name="chat m")
    assert span.resource["service.name"] == "b"


def test_a_failed_configure_leaves_no_thread_and_no_config(otlp_receiver: OtlpReceiver) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = run_fresh(
            f"""
            import json, threading, modelwatch
            before = sorted(t.name for t in threading.enumerate())
            try:
                modelwatch.configure(prometheus_port={port},
                                     otlp_endpoint={otlp_receiver.http_endpoint!r})
                error = None
            except modelwatch.ConfigurationError as exc:
                error = str(exc)
            after = sorted(t.name for t in threading.enumerate())
            print(json.dumps({{"error": error, "before": before, "after": after,
                              "config": modelwatch._config.current_config() is None}}))
            """
        )
    assert ran.out["error"].startswith(f"prometheus_port: cannot listen on 127.0.0.1:{port}")
    assert "range" in ran.out["error"]
    assert ran.out["after"] == ran.out["before"]
    assert ran.out["config"] is True


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"prices": {"m": {"per_request": math.nan}}}, "prices['m']['per_request']"),
        ({"prices": {"m": {"input_per_1k": math.inf}}}, "prices['m']['input_per_1k']"),
        ({"prices": {"m": {"output_per_1k": "0.1"}}}, "prices['m']['output_per_1k']"),
        ({"prices": ["m"]}, "prices must be a mapping"),
        ({"sample_ratio": math.nan}, "sample_ratio"),
        ({"sample_ratio": True}, "sample_ratio"),
        ({"prometheus_port": True}, "prometheus_port"),
        ({"prometheus_port": 9464.5}, "prometheus_port"),
        ({"prometheus_port": "9479-9464"}, "prometheus_port"),
        ({"prometheus_port": "0-10"}, "prometheus_port"),
        ({"service_name": 5}, "service_name"),
        ({"prometheus_sd_dir": 3}, "prometheus_sd_dir"),
        ({"system_metrics": "sometimes"}, "system_metrics"),
    ],
)
def test_wrong_types_and_non_finite_values_fail_naming_the_argument(
    kwargs: dict[str, Any], fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("MODELWATCH_PRICES", "MODELWATCH_PROMETHEUS_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigurationError) as raised:
        resolve(**kwargs)
    assert fragment in str(raised.value)


def test_flush_rejects_nan_and_bool_timeouts() -> None:
    import modelwatch

    for bad in (math.nan, True, "1"):
        with pytest.raises(ValueError, match="timeout_s"):
            modelwatch.flush(timeout_s=bad)  # type: ignore[arg-type]


def test_a_failed_reconfigure_leaves_no_stale_config() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = run_fresh(
            f"""
            import json, threading, modelwatch
            modelwatch.configure(service_name="first")
            try:
                modelwatch.configure(service_name="second", prometheus_port={port})
            except modelwatch.ConfigurationError:
                pass
            print(json.dumps({{"config": modelwatch._config.current_config() is None,
                              "threads": sorted(t.name for t in threading.enumerate())}}))
            """
        )
    assert ran.out == {"config": True, "threads": ["MainThread"]}
