"""Issue 11 items of the router: bad arguments fail at construction naming the argument, a
stale rate-limit reading is superseded by success, cancellations past the attempt timeout are
logged once; and issue 10's seams: the stream wrappers use no private router attribute, the
failover decisions come from modelwatch.errorkinds."""

from __future__ import annotations

import ast
import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import InferenceClient

from modelwatch import errorkinds, semconv
from modelwatch._clock import ManualClock
from modelwatch.errors import AllBackendsFailedError, ConfigurationError
from modelwatch.resilience import Backend, RetryPolicy, Router
from modelwatch.resilience import router as router_module
from modelwatch.testing import FakeModelServer

SRC = Path(__file__).resolve().parents[2] / "src" / "modelwatch" / "resilience"


def ok(_: Any = None) -> str:
    return "ok"


BAD_ROUTER_ARGS = [
    ({"ordering": "x"}, "ordering"),
    ({"classify": "x"}, "classify"),
    ({"breaker": "x"}, "breaker"),
    ({"breaker": {"open_s": 1}}, "breaker"),
    ({"retry": 3}, "retry"),
    ({"timeout_s": "30"}, "timeout_s"),
    ({"timeout_s": math.nan}, "timeout_s"),
    ({"timeout_s": math.inf}, "timeout_s"),
    ({"attempt_timeout_s": math.nan}, "attempt_timeout_s"),
    ({"attempt_timeout_s": -1.0}, "attempt_timeout_s"),
    ({"idle_timeout_s": math.inf}, "idle_timeout_s"),
    ({"first_chunk_timeout_s": True}, "first_chunk_timeout_s"),
    ({"hedge": 0.5}, "hedge"),
    ({"isolate_sync": "no"}, "isolate_sync"),
    ({"max_workers": 0}, "max_workers"),
]


@pytest.mark.parametrize(("kwargs", "argument"), BAD_ROUTER_ARGS, ids=str)
def test_a_bad_router_argument_fails_at_construction_naming_it(
    kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ConfigurationError, match=argument):
        Router("bad-args", [Backend(ok, model="m", provider="p")], **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"timeout_s": "5"}, "timeout_s"),
        ({"timeout_s": math.nan}, "timeout_s"),
        ({"usage": "x"}, "usage"),
        ({"probe": 3}, "probe"),
        ({"weight": math.inf}, "weight"),
    ],
    ids=str,
)
def test_a_bad_backend_argument_fails_at_construction_naming_it(
    kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ConfigurationError, match=argument):
        Backend(ok, model="m", provider="p", **kwargs)


def test_router_backends_must_be_a_list_of_backends() -> None:
    with pytest.raises(ConfigurationError, match="backends"):
        Router("bad-backends", 5)  # type: ignore[arg-type]


def test_two_live_routers_with_one_name_raise_and_a_closed_or_dropped_one_frees_it() -> None:
    first = Router("one-name", [Backend(ok, model="m", provider="p")])
    with pytest.raises(ConfigurationError, match=r"'one-name'.*already exists"):
        Router("one-name", [Backend(ok, model="other", provider="p")])
    assert first.call() == "ok"  # the failed construction left the first router intact
    first.close()
    second = Router("one-name", [Backend(ok, model="m", provider="p")])
    del second  # garbage (cycles included: a clash runs one gc.collect()) frees the name too
    third = Router("one-name", [Backend(ok, model="m", provider="p")])
    assert third.call() == "ok"
    third.close()


def test_a_success_without_headers_supersedes_a_zero_quota_reading(
    fake_server: FakeModelServer,
) -> None:
    """Two 429s set the primary's reading to 0 % left; Hugging Face answers carry no rate-limit
    headers, so before the fix the 0 stayed (and RateLimitQuotaLow paged) while calls succeeded."""
    model = "google/flan-t5-large"
    client = InferenceClient(model=fake_server.model_url(model), timeout=5.0)
    clock = ManualClock()
    router = Router(
        "quota",
        [
            Backend(
                lambda p: client.text_generation(p, max_new_tokens=2), model=model, provider="hf"
            )
        ],
        clock=clock,
        isolate_sync=False,
        retry=RetryPolicy(max_retries=0),
    )
    quota = {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "0"}
    fake_server.fail(model, "rate_limit", times=2, retry_after=1, headers=quota)
    for _ in range(2):
        with pytest.raises(AllBackendsFailedError):
            router.call("x")
        clock.advance(2.0)  # past the bench
    assert router.status()[0].rate_limit_remaining["requests"] == 0.0
    assert router.call("hello").startswith(f"[{model}]")  # the quota is evidently not spent
    assert router.status()[0].rate_limit_remaining == {}
    observed = [
        a for _, a in router_module._observe_rate_limits() if a["modelwatch.router"] == "quota"
    ]
    assert observed == []


def test_a_rate_limit_reading_expires_on_the_router_clock() -> None:
    clock = ManualClock()
    router = Router("quota-ttl", [Backend(ok, model="m", provider="p")], clock=clock)
    (m,) = router._members
    m.rate_limits = {"requests": 0.0}
    m.rate_limits_at = clock.monotonic()
    assert router.status()[0].rate_limit_remaining == {"requests": 0.0}
    clock.advance(router_module.RATE_LIMIT_READING_TTL_S + 1)
    assert router.status()[0].rate_limit_remaining == {}


async def test_calls_cancelled_by_their_callers_are_logged_once(
    logs: list[dict[str, Any]],
) -> None:
    async def hung(_: str) -> str:
        await asyncio.sleep(3600)
        return "never"

    router = Router("impatient", [Backend(hung, model="hung", provider="p")])
    for _ in range(router_module.CANCELLED_WARN_AFTER + 5):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(router.acall("x"), 0.001)
    warned = [e for e in logs if e["event"] == "modelwatch.router.calls_cancelled"]
    assert len(warned) == 1
    assert warned[0]["router"] == "impatient"
    assert warned[0]["attempt_timeout_s"] == 25.0
    assert router.breaker("hung").state == "closed"  # what the warning is about


def test_stream_wrappers_use_no_private_attribute_of_the_router() -> None:
    tree = ast.parse((SRC / "_streaming.py").read_text())
    private = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in {"router", "core"}
        and node.attr.startswith("_")
    ]
    assert private == []
    assert "Router" not in {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_failover_decisions_come_from_the_error_kind_table() -> None:
    source = "".join((SRC / name).read_text() for name in ("router.py", "_plan.py"))
    assert "_FAILOVER_KINDS" not in source
    assert "errorkinds.fails_over" in source
    assert "errorkinds.benches" in source
    assert semconv.ERROR_RATE_LIMITED in errorkinds.FAILOVER_KINDS


def test_the_route_spans_exception_event_is_scrubbed_chained_causes_included(
    telemetry: Any,
) -> None:
    """Issue 11: a secret in a backend's error (and in its chained cause) reached the route
    span's exception event and its stack trace."""
    secret = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2"

    def leaky(_: str) -> str:
        try:
            raise ValueError(f"OPENAI_API_KEY={secret} rejected")
        except ValueError as inner:
            raise RuntimeError(f"client_secret={secret}") from inner

    router = Router("scrubbed", [Backend(leaky, model="m", provider="p")], isolate_sync=False)
    with pytest.raises(RuntimeError):
        router.call("x")
    (route,) = telemetry.spans("route scrubbed")
    events = [e for e in route.events if e.name == "exception"]
    assert events
    exported = repr([dict(e.attributes or {}) for e in events]) + repr(route.status.description)
    assert secret not in exported
    assert "RuntimeError" in exported
