"""Never break the host: each internal step of a monitored call fails in turn, and the host's
return value and exception object stay the same, nothing escapes, and one rate-limited
internal-error event is logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

import modelwatch
from modelwatch import _safety
from modelwatch.capture import _content, _details, _record, _telemetry, call, cost, usage
from modelwatch.integrations import logging as log_correlation
from modelwatch.testing import Captured


class Broken(Exception):
    """What a failing internal step raises."""


def explode(*_: Any, **__: Any) -> Any:
    raise Broken("internal failure")


class ExplodingInstrument:
    def record(self, *_: Any, **__: Any) -> None:
        raise Broken("metric recording failed")

    add = record


class ExplodingTelemetry:
    """A Telemetry whose tracer, or whose instruments, fail."""

    def __init__(self, real: Any, *, tracer: bool) -> None:
        self._real = real
        self._tracer_fails = tracer

    @property
    def tracer(self) -> Any:
        if self._tracer_fails:

            class T:
                start_span = staticmethod(explode)

            return T()
        return self._real.tracer

    def instrument(self, _spec: Any) -> Any:
        return ExplodingInstrument()

    duration = tokens = time_to_first_chunk = cost = ExplodingInstrument()


# name -> installer(monkeypatch); each breaks one internal step
def _break_span_creation(mp: pytest.MonkeyPatch) -> None:
    real = _telemetry.telemetry()
    mp.setattr(call, "telemetry", lambda: ExplodingTelemetry(real, tracer=True))


def _break_metric_recording(mp: pytest.MonkeyPatch) -> None:
    real = _telemetry.telemetry()
    mp.setattr(call, "telemetry", lambda: ExplodingTelemetry(real, tracer=False))


def _break_usage_parsing(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(call, "extract_usage", explode)


def _break_cost_lookup(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(cost.prices, "lookup", explode)


def _break_classification(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(call, "_classify", explode)


def _break_attribute_scrubbing(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(_content, "scrub", explode)
    mp.setattr(_details, "scrub_value", explode)
    mp.setattr(_record, "scrub", explode)


def _break_span_end(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(call, "_record_error_on_span", explode)
    mp.setattr(call.Call, "_metric_attributes", explode)


BREAKERS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "span_creation": _break_span_creation,
    "metric_recording": _break_metric_recording,
    "usage_parsing": _break_usage_parsing,
    "cost_lookup": _break_cost_lookup,
    "classification": _break_classification,
    "attribute_scrubbing": _break_attribute_scrubbing,
    "span_end": _break_span_end,
}

RESULT = {"usage": {"prompt_tokens": 3, "completion_tokens": 4}, "model": "m"}


@pytest.fixture(autouse=True)
def _fresh_rate_limit() -> Iterator[None]:
    _safety.reset_internal_error_log()
    yield
    _safety.reset_internal_error_log()


def _decorated(fail: BaseException | None) -> Callable[[], Any]:
    @modelwatch.monitored(model="google/flan-t5-large", provider="huggingface")
    def host_function() -> Any:
        c = modelwatch.current_call()
        if c is not None:
            c.set_attribute("note", "token hf_abcdefghijklmnop")
        if fail is not None:
            raise fail
        return RESULT

    return host_function


@pytest.mark.parametrize("step", [s for s in BREAKERS if s != "classification"])
def test_success_result_unchanged_when_a_step_fails(
    step: str, monkeypatch: pytest.MonkeyPatch, modelwatch_capture: Captured
) -> None:
    BREAKERS[step](monkeypatch)
    with capture_logs() as logs:
        assert _decorated(None)() is RESULT
        assert _decorated(None)() is RESULT  # a second failure is rate-limited
    internal = [e for e in logs if e["event"] == "modelwatch.internal_error"]
    assert 1 <= len(internal) <= 2  # once per failing site, not once per call
    assert len({e["site"] for e in internal}) == len(internal)
    assert modelwatch.current_call() is None


@pytest.mark.parametrize("step", BREAKERS)
def test_exception_object_unchanged_when_a_step_fails(
    step: str, monkeypatch: pytest.MonkeyPatch, modelwatch_capture: Captured
) -> None:
    BREAKERS[step](monkeypatch)
    error = ConnectionRefusedError("model down")
    with capture_logs() as logs:
        with pytest.raises(ConnectionRefusedError) as raised:
            _decorated(error)()
    assert raised.value is error
    if step not in {"usage_parsing", "cost_lookup"}:  # steps a failed call does run
        sites = [e["site"] for e in logs if e["event"] == "modelwatch.internal_error"]
        assert sites
        assert len(sites) == len(set(sites))
    assert raised.value.__context__ is None
    assert modelwatch.current_call() is None


@pytest.mark.parametrize("step", BREAKERS)
def test_async_and_stream_shapes_survive_a_failing_step(
    step: str, monkeypatch: pytest.MonkeyPatch, modelwatch_capture: Captured
) -> None:
    BREAKERS[step](monkeypatch)
    m = modelwatch.monitored(model="m", provider="p")

    @m
    async def co() -> str:
        return "async ok"

    @m
    def gen() -> Iterator[dict[str, Any]]:
        yield RESULT
        yield RESULT

    with capture_logs():
        assert asyncio.run(co()) == "async ok"
        assert list(gen()) == [RESULT, RESULT]
        with m as c:
            c.record_usage(1, 1)
    assert modelwatch.current_call() is None


def test_log_correlation_failure_is_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_correlation.trace, "get_current_span", explode)
    record = logging.LogRecord("host", logging.INFO, __file__, 1, "hello", (), None)
    with capture_logs() as logs:
        assert log_correlation.TraceContextFilter().filter(record) is True
        assert log_correlation.add_trace_context(None, "info", {"event": "x"}) == {"event": "x"}
    assert record.trace_id == ""  # type: ignore[attr-defined]
    assert [e["site"] for e in logs if e["event"] == "modelwatch.internal_error"] == [
        "log_correlation"
    ]


def test_internal_error_log_is_rate_limited_per_site() -> None:
    with capture_logs() as logs:
        for _ in range(50):
            _safety.report_internal_error("site-a", Broken("x"))
        _safety.report_internal_error("site-b", Broken("y"))
    sites = [e["site"] for e in logs]
    assert sites == ["site-a", "site-b"]


def test_a_broken_logger_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_safety, "logger", structlog.wrap_logger(None, processors=[explode]))
    _safety.report_internal_error("site", Broken("x"))  # must not raise


def test_failing_observable_callback_is_contained(modelwatch_capture: Captured) -> None:
    with capture_logs() as logs:
        _telemetry.register_observable(
            modelwatch.semconv.MetricSpec("test.broken_gauge", "observable_gauge", "1", "x"),
            explode,
        )
        tel = _telemetry.telemetry()
        assert tel is not None
        assert modelwatch_capture.metric_points("test.broken_gauge") == []
    assert any(e.get("site") == "observe:test.broken_gauge" for e in logs)
    _telemetry._observables.pop("test.broken_gauge", None)


def test_usage_module_never_raises_on_hostile_objects() -> None:
    class Hostile:
        def __getattr__(self, name: str) -> Any:
            raise Broken(name)

    with pytest.raises(Broken):
        usage.extract_usage(Hostile())  # the extractor itself may raise...

    @modelwatch.monitored(model="m", provider="p")
    def host() -> Hostile:
        return hostile

    hostile = Hostile()
    with capture_logs():
        assert host() is hostile  # ...but never into the host
