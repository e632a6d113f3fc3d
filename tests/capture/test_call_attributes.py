"""What a call records during its run reaches the ended span exactly as if written at once:
same values, same override order, nothing lost on failure or after the end; the metric
attribute sets of a spec are shared between calls (the deferred drain groups by identity) and
bounded."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import modelwatch
from modelwatch import lifecycle, semconv
from modelwatch.capture import _spec
from modelwatch.capture._telemetry import use_providers
from modelwatch.testing import Captured

SPEC = lifecycle.model_spec(model="gpt-4o-mini", provider="openai")
NAME = "chat gpt-4o-mini"


class Boom(Exception):
    pass


def _full_call(call: modelwatch.Call) -> None:
    call.set_request(temperature=0.2, max_tokens=64, stop_sequences="END", seed=7)
    call.record_usage(12, 34, cache_read_input_tokens=5)
    call.set_response(response_id="resp-1", finish_reasons=["stop"], model="gpt-4o-mini-1")
    call.set_attribute("app.note", "kept")


def test_every_detail_is_on_the_ended_span(modelwatch_capture: Captured) -> None:
    call = lifecycle.start(SPEC)
    _full_call(call)
    call.stop("answer")
    attributes = dict(modelwatch_capture.span(NAME).attributes or {})
    assert attributes == {
        semconv.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_PROVIDER_NAME: "openai",
        semconv.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        semconv.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        semconv.GEN_AI_REQUEST_MAX_TOKENS: 64,
        semconv.GEN_AI_REQUEST_SEED: 7,
        semconv.GEN_AI_REQUEST_STOP_SEQUENCES: ("END",),
        semconv.GEN_AI_USAGE_INPUT_TOKENS: 12,
        semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 34,
        semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 5,
        semconv.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-1",
        semconv.GEN_AI_RESPONSE_ID: "resp-1",
        semconv.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        "app.note": "kept",
        semconv.MODELWATCH_COST: attributes[semconv.MODELWATCH_COST],
    }
    assert attributes[semconv.MODELWATCH_COST] > 0


def test_a_later_write_overrides_an_earlier_one_in_either_order(
    modelwatch_capture: Captured,
) -> None:
    call = lifecycle.start(SPEC)
    call.set_request(temperature=0.2)
    call.set_attribute(semconv.GEN_AI_REQUEST_TEMPERATURE, 0.5)  # by hand, after
    call.set_attribute(semconv.GEN_AI_REQUEST_TOP_P, 0.1)
    call.set_request(top_p=0.9)  # the setting, after
    call.record_usage(1, 2)
    call.record_usage(3)  # the output count stays
    call.stop()
    attributes = modelwatch_capture.span(NAME).attributes or {}
    assert attributes[semconv.GEN_AI_REQUEST_TEMPERATURE] == 0.5
    assert attributes[semconv.GEN_AI_REQUEST_TOP_P] == 0.9
    assert attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 3
    assert attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 2


def test_a_failed_call_keeps_its_details_and_its_error_type_wins(
    modelwatch_capture: Captured,
) -> None:
    call = lifecycle.start(SPEC)
    call.set_request(max_tokens=8)
    call.set_attribute(semconv.ERROR_TYPE, "mine")
    call.fail(TimeoutError("slow"))
    span = modelwatch_capture.span(NAME)
    attributes = span.attributes or {}
    assert attributes[semconv.GEN_AI_REQUEST_MAX_TOKENS] == 8
    assert attributes[semconv.ERROR_TYPE] == "timeout"
    assert [e.name for e in span.events] == ["exception"]


def test_details_survive_a_failure_while_recording_the_metrics(
    modelwatch_capture: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise Boom("metrics")

    monkeypatch.setattr(modelwatch.Call, "_metric_attributes", explode)
    call = lifecycle.start(SPEC)
    call.set_request(seed=3)
    call.stop()
    attributes = modelwatch_capture.span(NAME).attributes or {}
    assert attributes[semconv.GEN_AI_REQUEST_SEED] == 3


def test_a_write_after_the_end_changes_nothing(modelwatch_capture: Captured) -> None:
    call = lifecycle.start(SPEC)
    call.stop()
    call.set_request(temperature=0.9)  # the ended span ignores it, as before; no error
    call.set_attribute("late", 1)
    attributes = modelwatch_capture.span(NAME).attributes or {}
    assert semconv.GEN_AI_REQUEST_TEMPERATURE not in attributes
    assert "late" not in attributes


def test_on_start_sees_start_attributes_and_on_end_sees_everything() -> None:
    seen: dict[str, dict[str, Any]] = {}

    class Watch(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen["start"] = dict(span.attributes or {})

        def on_end(self, span: ReadableSpan) -> None:
            seen["end"] = dict(span.attributes or {})

    provider = TracerProvider()
    provider.add_span_processor(Watch())
    with use_providers(provider, MeterProvider(metric_readers=[InMemoryMetricReader()])):
        call = lifecycle.start(SPEC)
        _full_call(call)
        call.stop()
    assert semconv.GEN_AI_REQUEST_TEMPERATURE not in seen["start"]  # documented
    assert seen["start"][semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert seen["end"][semconv.GEN_AI_REQUEST_TEMPERATURE] == 0.2
    assert seen["end"][semconv.GEN_AI_RESPONSE_ID] == "resp-1"


def test_an_unsampled_call_records_its_metrics_and_no_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    with use_providers(provider, MeterProvider(metric_readers=[reader])):
        call = lifecycle.start(SPEC)
        _full_call(call)
        call.stop()
        data = reader.get_metrics_data()
    assert exporter.get_finished_spans() == ()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "gen_ai.client.token.usage" in names


# ------------------------------------------------------------------ metric attribute sets
@pytest.fixture
def spec() -> modelwatch.CallSpec:
    return lifecycle.model_spec(model="gpt-4o-mini", provider="openai", analysis="sets")


def test_calls_of_one_spec_and_response_model_share_their_attribute_sets(
    spec: modelwatch.CallSpec,
) -> None:
    first = spec.attribute_sets_for(False, None, "m-1")
    assert spec.attribute_sets_for(False, None, "m-1") is first
    duration, tokens_in, tokens_out = first
    assert duration[semconv.GEN_AI_RESPONSE_MODEL] == "m-1"
    assert tokens_in == {**duration, semconv.GEN_AI_TOKEN_TYPE: "input"}
    assert tokens_out == {**duration, semconv.GEN_AI_TOKEN_TYPE: "output"}
    failed = spec.attribute_sets_for(True, "timeout", None)[0]
    assert failed[semconv.ERROR_TYPE] == "timeout"
    assert failed[semconv.MODELWATCH_ORIGIN] == semconv.ORIGIN_PROBE
    assert semconv.GEN_AI_RESPONSE_MODEL not in failed


def test_attribute_sets_are_bounded_and_exact_past_the_bound(
    spec: modelwatch.CallSpec, modelwatch_capture: Captured
) -> None:
    n = _spec.ATTRIBUTE_SETS_PER_SPEC + 20
    for i in range(n):
        with modelwatch.monitored(model="gpt-4o-mini", provider="openai") as call:
            call.set_response(model=f"m-{i}")
        spec.attribute_sets_for(False, None, f"m-{i}")
    assert len(spec._sets) == _spec.ATTRIBUTE_SETS_PER_SPEC
    past = spec.attribute_sets_for(False, None, f"m-{n - 1}")
    assert past[0][semconv.GEN_AI_RESPONSE_MODEL] == f"m-{n - 1}"
    assert past is not spec.attribute_sets_for(False, None, f"m-{n - 1}")  # built, not kept
    points = modelwatch_capture.metric_points("gen_ai.client.operation.duration")
    models = sorted(p.attributes[semconv.GEN_AI_RESPONSE_MODEL] for p in points)
    assert models == sorted(f"m-{i}" for i in range(n))


def test_the_deferred_records_of_plain_calls_share_one_attributes_dict(
    modelwatch_capture: Captured,
) -> None:
    from modelwatch.capture._telemetry import telemetry

    queue = telemetry()._deferred
    decorated = modelwatch.monitored(model="gpt-4o-mini", provider="openai")
    for _ in range(3):
        with decorated as call:
            call.record_usage(1, 2)
            call.set_response(model="gpt-4o-mini-1")
    records = list(queue)[-9:]
    assert len({id(r[2]) for r in records}) == 3  # duration, input, output: one dict each
    assert modelwatch_capture.metric_count("gen_ai.client.operation.duration") == 3
