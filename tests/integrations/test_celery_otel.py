"""Celery and the OpenTelemetry conventions: messaging attributes on modelwatch's task spans,
modelwatch.celery as a BaseInstrumentor (entry point), and the real contrib
opentelemetry-instrumentation-celery owning spans with modelwatch adding the conventions."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest
from celery import Celery

import modelwatch
import modelwatch.celery
from modelwatch.integrations import celery as mw_celery
from modelwatch.testing import Captured
from support.fresh import run_fresh


def make_app(name: str) -> Celery:
    app = Celery(name, broker="memory://", backend="cache+memory://")

    @app.task(name=f"{name}.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    return app


@pytest.fixture
def app() -> Iterator[Celery]:
    app = make_app("conv")
    modelwatch.celery.instrument(app)
    yield app
    modelwatch.celery.uninstrument(app)
    app.close()


def test_task_spans_follow_the_messaging_conventions(
    app: Celery, modelwatch_capture: Captured
) -> None:
    app.tasks["conv.add"].apply_async(args=(1, 2), queue="reviews")
    assert app.tasks["conv.add"].apply(args=(1, 2)).get() == 3
    send = modelwatch_capture.span("send conv.add")
    assert send.attributes is not None
    assert send.attributes["messaging.system"] == "celery"
    assert send.attributes["messaging.operation.name"] == "send"
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.destination.name"] == "reviews"
    process = modelwatch_capture.span("process conv.add")
    assert process.attributes is not None
    assert process.attributes["messaging.operation.name"] == "process"
    assert process.attributes["messaging.operation.type"] == "process"


def test_the_instrumentor_covers_every_app_and_is_an_entry_point(
    modelwatch_capture: Captured,
) -> None:
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )

    group = entry_points(group="opentelemetry_instrumentor")
    (entry,) = [e for e in group if e.name == "modelwatch_celery"]
    instrumentor_cls = entry.load()
    assert instrumentor_cls is modelwatch.celery.CeleryInstrumentor
    assert issubclass(instrumentor_cls, BaseInstrumentor)
    other = make_app("anyapp")
    assert not mw_celery.is_instrumented(other)
    instrumentor = instrumentor_cls()
    instrumentor.instrument()
    try:
        assert mw_celery.is_instrumented(other)
        assert other.tasks["anyapp.add"].apply(args=(2, 2)).get() == 4
        assert modelwatch_capture.span("process anyapp.add").kind.name == "CONSUMER"
        assert modelwatch_capture.metric_count("modelwatch.task.duration") == 1
    finally:
        instrumentor.uninstrument()
        other.close()
    assert not mw_celery.is_instrumented(other)


def test_with_the_real_contrib_instrumentation_it_owns_spans_we_add_conventions() -> None:
    pytest.importorskip("opentelemetry.instrumentation.celery")
    ran = run_fresh(
        """
        import json
        from celery import Celery
        from opentelemetry import trace
        from opentelemetry.instrumentation.celery import CeleryInstrumentor as Contrib
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry import metrics
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider([reader]))
        Contrib().instrument()
        import modelwatch, modelwatch.celery
        app = Celery("c", broker="memory://", backend="cache+memory://")
        @app.task(name="c.add")
        def add(x, y):
            return x + y
        modelwatch.celery.instrument(app)
        add.apply_async(args=(1, 2), queue="reviews")
        assert add.apply(args=(1, 2)).get() == 3
        spans = {s.name: dict(s.attributes) for s in exporter.get_finished_spans()}
        data = reader.get_metrics_data()
        names = [m.name for rm in data.resource_metrics for sm in rm.scope_metrics
                 for m in sm.metrics]
        print(json.dumps({"spans": spans, "metrics": names}))
        """
    )
    spans = ran.out["spans"]
    assert set(spans) == {"apply_async/c.add", "run/c.add"}  # the contrib's, none of ours
    assert spans["apply_async/c.add"]["messaging.operation.name"] == "send"
    assert spans["apply_async/c.add"]["messaging.destination.name"] == "reviews"
    assert spans["run/c.add"]["messaging.operation.type"] == "process"
    assert spans["run/c.add"]["messaging.system"] == "celery"
    assert "modelwatch.task.duration" in ran.out["metrics"]  # modelwatch's metrics stay
