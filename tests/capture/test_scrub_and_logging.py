"""Secrets never reach telemetry; log records get trace and span ids."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

import modelwatch
from modelwatch.capture.scrub import scrub
from modelwatch.integrations.logging import TraceContextFilter, add_trace_context
from modelwatch.testing import Captured

SECRETS = [
    "hf_AbCdEfGhIjKlMnOpQrStUv",
    "sk-proj-abcdefghijklmnop1234",
    "sk-abcdefghijklmnopqrstuvwx",
    "AKIAABCDEFGHIJKLMNOP",
    "ghp_abcdefghijklmnopqrstuvwxyz0123",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_known_token_shapes_are_scrubbed(secret: str) -> None:
    text = f"request failed with key {secret} at 10:00"
    assert secret not in scrub(text)
    assert "[REDACTED]" in scrub(text)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abc.def.ghi-jkl",
        'payload {"api_key": "s3cr3t-value"}',
        "https://user:hunter22@proxy.local:8080/v1",
        "token=abcd1234efgh&model=x",
        "password: correct-horse",
    ],
)
def test_secret_pairs_and_url_credentials_are_scrubbed(text: str) -> None:
    out = scrub(text)
    for secret in ("abc.def.ghi-jkl", "s3cr3t-value", "hunter22", "abcd1234efgh", "correct-horse"):
        assert secret not in out


def test_ordinary_text_is_untouched() -> None:
    text = "Model google/flan-t5-large is currently loading (estimated 20 s)"
    assert scrub(text) == text


def test_exception_messages_and_attributes_are_scrubbed_on_spans(
    modelwatch_capture: Captured,
) -> None:
    with pytest.raises(PermissionError):
        with modelwatch.monitored(model="m", provider="p") as call:
            call.set_attribute("endpoint", "https://u:pw12345@host/x")
            raise PermissionError("401 for token hf_AbCdEfGhIjKlMnOpQrStUv")
    span = modelwatch_capture.span("chat m")
    dumped = repr(span.attributes) + repr([e.attributes for e in span.events])
    dumped += span.status.description or ""
    assert "hf_AbCdEfGhIjKlMnOpQrStUv" not in dumped
    assert "pw12345" not in dumped
    assert "[REDACTED]" in dumped


def test_content_is_not_captured_unless_enabled(
    modelwatch_capture: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelwatch.capture import _settings

    with modelwatch.monitored(model="m", provider="p") as call:
        call.record_messages(input=[{"role": "user", "content": "my secret plan"}], output="ok")
    span = modelwatch_capture.span("chat m")
    assert "gen_ai.input.messages" not in (span.attributes or {})

    monkeypatch.setattr(_settings, "capture_content", True)
    modelwatch_capture.clear()
    with modelwatch.monitored(model="m", provider="p") as call:
        call.record_messages(input="use key sk-abcdefghijklmnopqrstuvwx", output="ok")
    attrs = modelwatch_capture.span("chat m").attributes or {}
    assert json.loads(str(attrs["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "use key [REDACTED]"}]}
    ]
    assert json.loads(str(attrs["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}
    ]


def test_stdlib_filter_and_structlog_processor_add_ids(modelwatch_capture: Captured) -> None:
    record = logging.LogRecord("host", logging.INFO, __file__, 1, "msg", (), None)
    with modelwatch.monitored(model="m", provider="p"):
        TraceContextFilter().filter(record)
        event = add_trace_context(None, "info", {"event": "e"})
    span = modelwatch_capture.span("chat m")
    assert record.trace_id == f"{span.context.trace_id:032x}"  # type: ignore[attr-defined]
    assert record.span_id == f"{span.context.span_id:016x}"  # type: ignore[attr-defined]
    assert event["trace_id"] == record.trace_id  # type: ignore[attr-defined]
    outside = logging.LogRecord("host", logging.INFO, __file__, 1, "msg", (), None)
    TraceContextFilter().filter(outside)
    assert outside.trace_id == ""  # type: ignore[attr-defined]
    assert "trace_id" not in add_trace_context(None, "info", {"event": "e"})


def test_library_does_not_configure_logging() -> None:
    code = """
import json, logging, structlog, modelwatch
from modelwatch._safety import report_internal_error
with modelwatch.monitored(model="m", provider="p"):
    pass
report_internal_error("site", RuntimeError("x"))
print(json.dumps({"structlog": structlog.is_configured(),
                  "root_handlers": len(logging.getLogger().handlers)}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "structlog": False,
        "root_handlers": 0,
    }
