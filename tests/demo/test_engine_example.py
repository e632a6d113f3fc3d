"""examples/engine.py imports cleanly and serves a request end to end over HTTP."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from modelwatch.testing import capture
from modelwatch.testing.fake_server import FakeModelServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "engine.py"


@pytest.fixture(scope="module")
def engine_module() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("example_engine", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["example_engine"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("example_engine", None)


def test_engine_example_serves_an_analysis_and_health(engine_module: ModuleType) -> None:
    with FakeModelServer() as fake, capture() as captured:
        routers = engine_module.build_routers(fake.url, fake.openai_base_url)
        assert set(routers) == {"code_review", "requirement_extraction", "tech_recommendation"}
        health = engine_module.build_health(routers)
        server = engine_module.serve(engine_module.make_app(routers, health), port=0)
        base = f"http://127.0.0.1:{server.server_port}"
        try:
            health.run_once()
            with httpx.Client(base_url=base, timeout=10.0) as client:
                answer = client.post("/analyze/code_review", json={"text": "def f(): pass"})
                assert answer.status_code == 200
                body = answer.json()
                assert body["analysis"] == "code_review"
                # the fake echoes the prompt, tagged with the model that answered: the primary
                assert body["result"].startswith("[google/flan-t5-large] Review this code")

                fake.fail("facebook/bart-large-cnn", "loading")
                moved = client.post(
                    "/analyze/requirement_extraction",
                    json={"text": "The system shall log every login. It must be fast."},
                )
                assert moved.status_code == 200
                assert moved.json()["result"] == "The system shall log every login"

                ready = client.get("/health/ready")
                assert ready.status_code == 200
                checks = {c["name"] for c in json.loads(ready.content)["checks"]}
                assert {"google/flan-t5-large", "gpt-4o-mini", "code_review"} <= checks
                assert client.get("/analyze/nope").status_code == 404

                fake.fail("google/flan-t5-xl", "server_error")
                rec = client.post("/analyze/tech_recommendation", json={"text": "a queue"})
                assert rec.json()["result"].startswith("[gpt-4o-mini]")
        finally:
            server.shutdown()
            server.server_close()
            health.stop()
            for router in routers.values():
                router.close()  # frees the routers' names for the next test
    # the routed calls were monitored: one model span per attempt, the failed one included
    spans = [s.name for s in captured.spans]
    assert "text_completion google/flan-t5-large" in spans
    assert "text_completion facebook/bart-large-cnn" in spans
    assert "text_completion sshleifer/distilbart-cnn-12-6" in spans
    # the openai backend told modelwatch its tokens through current_call()
    usage = dict(captured.span("chat gpt-4o-mini").attributes or {})
    assert isinstance(usage["gen_ai.usage.input_tokens"], int)
    assert isinstance(usage["gen_ai.usage.output_tokens"], int)
    assert usage["gen_ai.usage.input_tokens"] > 0
    assert usage["gen_ai.usage.output_tokens"] > 0


def test_engine_example_hedges_a_hung_primary_and_skips_a_spent_budget(
    engine_module: ModuleType,
) -> None:
    """code_review's router hedges (examples/engine.py's HEDGES): with its primary hung, the
    backup answers; the budget on google/flan-t5-xl (BUDGETS, enforce="skip"), once spent,
    sends tech_recommendation to gpt-4o-mini; /status serves the status page."""
    import modelwatch

    with FakeModelServer() as fake, capture() as captured:
        routers = engine_module.build_routers(
            fake.url,
            fake.openai_base_url,
            hedges={"code_review": modelwatch.Hedge(after_s=0.2)},
            attempt_timeout_s=5.0,
            client_timeout_s=6.0,
        )
        (budget,) = engine_module.build_budgets({"google/flan-t5-xl": 0.001})  # < one call
        health = engine_module.build_health(routers)
        server = engine_module.serve(engine_module.make_app(routers, health), port=0)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}") as client:
                fake.fail("google/flan-t5-large", "hang")
                hedged = client.post("/analyze/code_review", json={"text": "x = 1"}, timeout=4)
                assert hedged.json()["result"].startswith("[meta-llama/Llama-3.1-8B-Instruct]")
                fake.heal()
                first = client.post("/analyze/tech_recommendation", json={"text": "a queue"})
                assert first.json()["result"].startswith("[google/flan-t5-xl]")
                assert budget.exceeded  # $0.0012 spent of $0.001
                then = client.post("/analyze/tech_recommendation", json={"text": "a cache"})
                assert then.json()["result"].startswith("[gpt-4o-mini]")
                health.run_once()
                page = client.get("/status")
                assert page.status_code == 200
                assert page.headers["content-type"].startswith("text/html")
                assert 'data-check="google/flan-t5-large"' in page.text
                assert client.get("/status/nope").status_code == 404
        finally:
            server.shutdown()
            server.server_close()
            health.stop()
            budget.close()
            for router in routers.values():
                router.close()
    assert captured.metric_sum("modelwatch.hedges", {"modelwatch.hedge.outcome": "won"}) == 1
    budget_moves = {"modelwatch.router": "tech_recommendation", "reason": "budget"}
    # the second user call, then the synthetic check of health.run_once()
    assert captured.metric_sum("modelwatch.failovers", budget_moves) == 2
