"""Warm-up (issue 15): a backend that starts "loading" (Hugging Face 503 with
``estimated_time``) is called until it answers, waiting what the 503 asks for; the router shows
it as warming meanwhile. Real ``huggingface_hub`` client against FakeModelServer; the waits
advance a manual clock."""

from __future__ import annotations

from typing import Any

import pytest
from huggingface_hub import InferenceClient

from modelwatch import semconv
from modelwatch._clock import ManualClock
from modelwatch.errors import ConfigurationError
from modelwatch.resilience import Backend, Router, WarmupResult
from modelwatch.testing import FakeModelServer

COLD = "google/flan-t5-large"
WARM = "facebook/bart-large-cnn"


def test_warm_up_waits_out_loading_and_reports_per_backend(fake_server: FakeModelServer) -> None:
    clock = ManualClock()
    seen_warming: list[bool] = []
    with (
        InferenceClient(model=fake_server.model_url(COLD), timeout=5) as cold,
        InferenceClient(model=fake_server.model_url(WARM), timeout=5) as warm,
    ):

        def warm_cold() -> Any:
            seen_warming.append(router.status()[0].warming)
            return cold.text_generation("ping", max_new_tokens=1)

        router = Router(
            "warm",
            [
                Backend(lambda p: p, model=COLD, provider="huggingface", warmup=warm_cold),
                Backend(
                    lambda p: p,
                    model=WARM,
                    provider="huggingface",
                    probe=lambda: warm.text_generation("ping", max_new_tokens=1),
                ),
                Backend(lambda p: p, model="no-warmup", provider="t"),
            ],
            clock=clock,
        )
        fake_server.fail(COLD, "loading", times=2, estimated_time=7.5)
        results = router.warm_up(timeout_s=60.0)
    by_model = {r.model: r for r in results}
    assert by_model[COLD] == WarmupResult(COLD, COLD, ok=True, attempts=3, elapsed_s=15.0)
    assert clock.sleeps == [7.5, 7.5]  # the 503's estimated_time, honoured
    assert by_model[WARM].ok
    assert by_model[WARM].attempts == 1
    assert by_model["no-warmup"].skipped
    assert seen_warming == [True, True, True]  # health can say "warming", not "down"
    assert not any(s.warming for s in router.status())
    assert fake_server.request_count(COLD) == 3


def test_warm_up_gives_up_at_its_timeout(fake_server: FakeModelServer) -> None:
    clock = ManualClock()
    with InferenceClient(model=fake_server.model_url(COLD), timeout=5) as cold:
        router = Router(
            "warm-timeout",
            [
                Backend(
                    lambda p: p,
                    model=COLD,
                    provider="huggingface",
                    warmup=lambda: cold.text_generation("ping", max_new_tokens=1),
                )
            ],
            clock=clock,
        )
        fake_server.fail(COLD, "loading", estimated_time=20.0)
        (result,) = router.warm_up(timeout_s=30.0)
    assert not result.ok
    assert result.last_error == semconv.ERROR_UNAVAILABLE
    assert result.attempts == 3  # at 0 s, 20 s (its estimated_time) and a last one at 30 s
    assert clock.sleeps == [20.0, 10.0]


def test_bad_warmup_settings_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="warmup"):
        Backend(lambda: None, model="m", provider="p", warmup="x")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="warm_every_s"):
        Router("warm-bad", [Backend(lambda: None, model="m", provider="p")], warm_every_s=0)
