"""The table of secret forms the scrubber removes, what it must leave alone, and an end-to-end
check: a secret-bearing failure through a real Router, the real ``huggingface_hub`` client,
FakeModelServer and an OTLP receiver reaches neither the exported bytes nor any log line."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import structlog
from huggingface_hub import InferenceClient
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from structlog.testing import capture_logs

import modelwatch
from modelwatch import _safety
from modelwatch.capture import _telemetry
from modelwatch.capture.scrub import REDACTED, scrub, scrub_line
from modelwatch.errors import AllBackendsFailedError
from modelwatch.resilience.backend import Backend
from modelwatch.resilience.router import Router
from modelwatch.testing import FakeModelServer

# (text, the secret that must go, what must stay)
FORMS: list[tuple[str, str, str]] = [
    ("psql: DB_PASSWORD=hunter2-Xy9 rejected", "hunter2-Xy9", "DB_PASSWORD="),
    ("export POSTGRES_PASSWORD='p@ss w0rd'", "p@ss w0rd", "POSTGRES_PASSWORD="),
    ("client_secret=Zq8s-7HJ2kLm0 grant=client_credentials", "Zq8s-7HJ2kLm0", "grant="),
    ("refresh_token=1//0gAbCdEf-ghIJ&scope=x", "1//0gAbCdEf-ghIJ", "scope=x"),
    ("OPENAI_API_KEY=proj0123456789abcdef", "proj0123456789abcdef", "OPENAI_API_KEY="),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI", ""),
    ("AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI", ""),
    (
        "GET https://maps.googleapis.com/x?key=AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW",
        "AIzaSy",
        "?key=",
    ),
    ("https://gen.googleapis.com/v1?alt=json&key=abcdef123456", "abcdef123456", "alt=json"),
    ("Authorization: Token 9f8e7d6c5b4a39281706", "9f8e7d6c5b4a39281706", "Authorization: Token"),
    ("authorization: Bearer eyJhbGciOi.abc.def", "eyJhbGciOi.abc.def", "Bearer"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "Basic"),
    ("Authorization: ApiKey a1b2c3d4e5f6", "a1b2c3d4e5f6", ""),
    ("headers={'Authorization': 'Bearer sekr1t-t0ken-value'}", "sekr1t-t0ken-value", ""),
    ("Proxy-Authorization: Basic Zm9vOmJhcg==", "Zm9vOmJhcg==", ""),
    ("sent bearer abcd1234efgh5678 upstream", "abcd1234efgh5678", "upstream"),
    ("key AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE", "denied"),
    ("session ASIAY34FZKBOKMUTVV7A expired", "ASIAY34FZKBOKMUTVV7A", "expired"),
    ("gcp token ya29.a0AfH6SMBx-abcdefghijklmnop", "ya29.a0AfH6SMBx", ""),
    (
        '{"type": "service_account", "private_key": "MIIEvgIBADAN"}',
        "MIIEvgIBADAN",
        "service_account",
    ),
    (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Eby8vdM02xNOcqF==;x=y",
        "Eby8vdM02xNOcqF==",
        "AccountName=acct",
    ),
    ("https://acct.blob.core.windows.net/c?sv=2022&sig=AbC%2Fdef123", "AbC%2Fdef123", "sv=2022"),
    ("Ocp-Apim-Subscription-Key: 0123456789abcdef0123", "0123456789abcdef0123", ""),
    (
        "github ghp_abcdefghijklmnopqrstuvwxyz0123 push",
        "ghp_abcdefghijklmnopqrstuvwxyz0123",
        "push",
    ),
    ("pat github_pat_11ABCDEFG0123456789_abcdefghij", "github_pat_11ABCDEFG", ""),
    ("slack xoxb-123456789012-abcdefghijkl failed", "xoxb-123456789012-abcdefghijkl", "failed"),
    ("post https://hooks.slack.com/services/T000/B000/XXXXXXXX", "T000/B000/XXXXXXXX", ""),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
        "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
        "jwt",
    ),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY----- ok",
        "MIIEowIBAAKCAQEA7",
        "ok",
    ),
    ("cut: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEF", "MIIEvQIBADANB", "cut:"),
    ("token hf_AbCdEfGhIjKlMnOpQrStUv", "hf_AbCdEfGhIjKlMnOpQrStUv", ""),
    ("anthropic sk-ant-api03-abcdefghijklmnop", "sk-ant-api03-abcdefghijklmnop", "anthropic"),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe"),
    ("postgres://app:s3cr3tpw@db.internal:5432/x", "s3cr3tpw", "db.internal:5432"),
    ('payload {"api_key": "s3cr3t-value"}', "s3cr3t-value", '"api_key": "'),
    ("x-api-key: 12345678abcdefgh", "12345678abcdefgh", ""),
    ("Cookie: session=abcdef0123456789", "abcdef0123456789", ""),
    ("HF_TOKEN=hf_shortbutreal1", "hf_shortbutreal1", "HF_TOKEN="),
    ("passphrase: correct horse", "correct", ""),
    ("S3 X-Amz-Signature=ab12cd34ef56&X-Amz-Date=2026", "ab12cd34ef56", "X-Amz-Date=2026"),
]


@pytest.mark.parametrize(("text", "secret", "kept"), FORMS, ids=[f[0][:40] for f in FORMS])
def test_every_form_is_scrubbed(text: str, secret: str, kept: str) -> None:
    out = scrub(text)
    assert secret not in out, out
    assert REDACTED in out
    assert kept in out
    assert scrub(out) == out  # idempotent


UNTOUCHED = [
    "Model google/flan-t5-large is currently loading (estimated 20 s)",
    "max_tokens=256 input_tokens=10 output_tokens=5 token_type=input",
    "gen_ai.token.type=output, gen_ai.usage.input_tokens: 12",
    "429 Too Many Requests: retry after 7 s (rate limit of 1000 tokens per minute)",
    "token limit exceeded: 4096",
    'Traceback (most recent call last):\n  File "/app/engine.py", line 12, in run',
    "the author: Jane; keyboard: qwerty",
]


@pytest.mark.parametrize("text", UNTOUCHED)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub(text) == text


def test_scrub_line_folds_and_caps() -> None:
    out = scrub_line("a\nb DB_PASSWORD=x1y2z3w4\n" + "c" * 500)
    assert "\n" not in out
    assert "x1y2z3w4" not in out
    assert len(out) == 200


def test_internal_error_log_lines_are_scrubbed() -> None:
    _safety.reset_internal_error_log()
    with capture_logs() as logs:
        _safety.report_internal_error("scrub-test", RuntimeError("boom client_secret=abc123xyz"))
    assert logs
    assert "abc123xyz" not in repr(logs)


# ----------------------------------------------------------------------- end to end
SECRETS = {
    "db": "DB_PASSWORD=pw-4f9d2c71",
    "auth": "Authorization: Token tok9a8b7c6d5e4f",
    "key": "OPENAI_API_KEY=projAbC123dEf456",
    "aws": "aws_secret_access_key=wJalrXUtnFEMIK7MDENG",
    "google": "https://x.googleapis.com/v1?key=AIzaSyD-0123456789abcdefghijklmnopqrs",
    "refresh": "refresh_token=rt-0a1b2c3d4e5f",
}
VALUES = [
    "pw-4f9d2c71",
    "tok9a8b7c6d5e4f",
    "projAbC123dEf456",
    "wJalrXUtnFEMIK7MDENG",
    "AIzaSyD",
    "rt-0a1b2c3d4e5f",
]


class UpstreamError(Exception):
    pass


def test_a_secret_bearing_failure_through_a_real_router_reaches_no_export_or_log(
    fake_server: FakeModelServer, otlp_receiver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    primary_model, backup_model = "google/flan-t5-large", "facebook/bart-large-cnn"
    # the server echoes secrets in its error bodies (the client puts them in its exception)
    fake_server.fail(primary_model, "server_error", message=f"db down: {SECRETS['db']}")
    fake_server.fail(backup_model, "server_error", message=f"bad header {SECRETS['auth']}")
    primary = InferenceClient(model=fake_server.model_url(primary_model), timeout=5)
    backup = InferenceClient(model=fake_server.model_url(backup_model), timeout=5)

    def call_backup(prompt: str) -> str:
        try:
            return str(backup.text_generation(prompt, max_new_tokens=4))
        except Exception as exc:  # a chained cause with more secrets
            raise UpstreamError(f"{SECRETS['key']} {SECRETS['aws']} {SECRETS['google']}") from (
                UpstreamError(f"{SECRETS['refresh']} {exc}")
            )

    router = Router(
        "scrub-e2e",
        [
            Backend(
                lambda p: primary.text_generation(p, max_new_tokens=4),
                model=primary_model,
                provider="huggingface",
            ),
            Backend(call_backup, model=backup_model, provider="huggingface"),
        ],
    )
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp_receiver.traces_url))
    )
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    _safety.reset_internal_error_log()
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs, _telemetry.use_providers(tracer_provider, meter_provider):
        with pytest.raises((AllBackendsFailedError, UpstreamError)):
            router.call("hello")
    tracer_provider.shutdown()
    meter_provider.shutdown()
    spans = otlp_receiver.wait_for_spans(3)
    route = [s for s in spans if s.name.startswith("route")] or spans
    assert any(e.name == "exception" for s in route for e in s.events)
    exported = b"".join(r.message.SerializeToString() for r in otlp_receiver.requests())
    assert REDACTED.encode() in exported
    logged = repr(logs) + caplog.text + repr(structlog.get_config())
    for value in VALUES:
        assert value.encode() not in exported, value
        assert value not in logged, value


def test_captured_prompts_are_scrubbed_and_stay_json(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from modelwatch.capture import _settings
    from modelwatch.testing import capture

    monkeypatch.setattr(_settings, "capture_content", True)
    messages = [{"role": "user", "content": f"connect with {SECRETS['db']} and {SECRETS['key']}"}]
    with capture() as cap:
        with modelwatch.monitored(model="m", provider="p") as call:
            call.record_messages(input=messages, output={"api_key": "s3cr3t-0123"})
        span = cap.span("chat m")
    recorded = dict(span.attributes or {})
    dumped = repr(recorded)
    for value in (*VALUES, "s3cr3t-0123"):
        assert value not in dumped
    assert json.loads(recorded["gen_ai.output.messages"]) == {"api_key": REDACTED}


def test_a_health_check_error_and_its_log_line_carry_no_secret() -> None:
    from modelwatch.health import Health

    def probe() -> None:
        raise ConnectionError(
            f"login failed: {SECRETS['db']} {SECRETS['auth']} {SECRETS['google']}"
        )

    health = Health(jitter=0.0)
    try:
        health.add("db", probe=probe, kind="dependency")
        with capture_logs() as logs:
            check = health.run_once().check("db")
    finally:
        health.stop()
    assert check is not None
    assert check.status == "down"
    assert check.error is not None
    assert REDACTED in check.error
    changes = [e for e in logs if e.get("event") == "modelwatch.health.state_change"]
    assert changes
    for value in [*VALUES[:2], "AIzaSyD"]:
        assert value not in check.error
        assert value not in repr(logs)
