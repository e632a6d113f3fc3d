"""Content capture modes: util-genai's OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT values
are accepted (configure() no longer refuses SPAN_ONLY) and decide span and/or event."""

from __future__ import annotations

import json

import pytest

import modelwatch
from modelwatch import ConfigurationError
from modelwatch._config import resolve
from modelwatch.capture import _settings
from modelwatch.testing import Captured

ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


@pytest.mark.parametrize(
    ("value", "captured"),
    [
        ("SPAN_ONLY", True),
        ("EVENT_ONLY", True),
        ("span_and_event", True),
        ("NO_CONTENT", False),
        ("true", True),
        ("false", False),
    ],
)
def test_util_genai_values_are_accepted(
    value: str, captured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELWATCH_CAPTURE_CONTENT", raising=False)
    monkeypatch.setenv(ENV, value)
    assert resolve().capture_content is captured


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELWATCH_CAPTURE_CONTENT", raising=False)
    monkeypatch.setenv(ENV, "EVERYWHERE")
    with pytest.raises(ConfigurationError, match=ENV):
        resolve()


@pytest.mark.parametrize(
    ("mode", "on_span", "on_event"),
    [("SPAN_ONLY", True, False), ("EVENT_ONLY", False, True), ("SPAN_AND_EVENT", True, True)],
)
def test_modes_put_content_on_span_and_or_event(
    mode: str,
    on_span: bool,
    on_event: bool,
    modelwatch_capture: Captured,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, mode)
    monkeypatch.delenv("MODELWATCH_CAPTURE_CONTENT", raising=False)
    _settings.apply(True)
    try:
        with modelwatch.monitored(model="m", provider="p") as call:
            call.record_messages(input="hi", output="ho", system="be kind")
    finally:
        _settings.apply(False)
    span = modelwatch_capture.span("chat m")
    attributes = dict(span.attributes or {})
    assert ("gen_ai.input.messages" in attributes) is on_span
    events = [e for e in span.events if e.name == "gen_ai.client.inference.operation.details"]
    assert bool(events) is on_event
    where = attributes if on_span else dict(events[0].attributes or {})
    assert json.loads(where["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "be kind"}
    ]
    assert json.loads(where["gen_ai.output.messages"])[0]["role"] == "assistant"


def test_apply_false_turns_capture_off(modelwatch_capture: Captured) -> None:
    _settings.apply(False)
    with modelwatch.monitored(model="m", provider="p") as call:
        call.record_messages(input="secret plan")
    assert "gen_ai.input.messages" not in dict(modelwatch_capture.span("chat m").attributes or {})
