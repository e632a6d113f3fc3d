"""A primary model dies, the backup takes over, and the primary comes back: with telemetry.

Runs on its own (``python examples/failover.py``): a local FakeModelServer stands in for the
Hugging Face Inference API, and the real ``huggingface_hub.InferenceClient`` talks to it.

1. Both models answer; every call goes to the primary (FLAN-T5).
2. The primary starts failing with 500s. The first calls fail over to the backup (BART) at
   once, without sleeping; after three failures the primary's breaker opens and the primary
   is not called at all any more: a dead model costs one failed attempt per call, then none.
3. The primary heals. Its background probe notices without any user traffic, the breaker
   closes, and traffic returns to the primary.

Along the way it prints what modelwatch recorded: the route span and its attempt spans, the
failover and breaker-transition metrics, and ``router.status()``.
"""

from __future__ import annotations

import threading
import time

from huggingface_hub import InferenceClient

import modelwatch
from modelwatch.testing import FakeModelServer, capture

PRIMARY = "google/flan-t5-large"
BACKUP = "facebook/bart-large-cnn"


def main() -> None:
    with FakeModelServer() as server, capture() as telemetry:
        flan = InferenceClient(model=server.model_url(PRIMARY), timeout=5.0)
        bart = InferenceClient(model=server.model_url(BACKUP), timeout=5.0)

        router = modelwatch.Router(
            "summarize",
            [
                modelwatch.Backend(
                    lambda text: flan.text_generation(text, max_new_tokens=8),
                    model=PRIMARY,
                    provider="huggingface",
                    operation="text_generation",
                    # checked in the background while the breaker is open
                    probe=lambda: flan.text_generation("ping", max_new_tokens=1),
                ),
                modelwatch.Backend(
                    lambda text: bart.text_generation(text, max_new_tokens=8),
                    model=BACKUP,
                    provider="huggingface",
                    operation="text_generation",
                ),
            ],
            # the defaults, except a 1 s probe so the example is quick (default 5 s)
            breaker=modelwatch.BreakerPolicy(probe_interval_s=1.0),
            timeout_s=30.0,
            attempt_timeout_s=25.0,
        )

        print("== 1. both healthy")
        print("  ", router.call("Summarize: the release went well."))

        print("== 2. the primary starts failing (HTTP 500)")
        server.fail(PRIMARY, "server_error")
        for i in range(5):
            started = time.perf_counter()
            answer = router.call(f"call {i}")
            print(f"   {answer!r:45} {1000 * (time.perf_counter() - started):6.1f} ms")
        print(f"   the primary was asked {server.request_count(PRIMARY) - 1} times for 5 calls")
        show_status(router)

        print("== 3. the primary heals; its probe closes the breaker without user traffic")
        closed = threading.Event()
        router.breaker(PRIMARY).add_listener(
            lambda _b, t: closed.set() if t.to_state == "closed" else None
        )
        healed = time.monotonic()
        server.heal(PRIMARY)
        closed.wait(10.0)
        print(f"   breaker closed {time.monotonic() - healed:.2f} s after the primary healed")
        print("  ", router.call("Summarize: back to normal."))
        show_status(router)

        print("== telemetry")
        failover_route = next(
            s
            for s in telemetry.find_spans("route summarize")
            if any(e.name == "modelwatch.failover" for e in s.events)
        )
        # the attempt made before the route span started is its sibling, linked from it;
        # the attempts after are its children (docs/router.md, "Trace shape")
        linked = {link.context.span_id for link in failover_route.links}
        attempts = [
            ("linked" if s.context.span_id in linked else "child", s)
            for s in telemetry.spans
            if s.context.span_id in linked
            or (s.parent is not None and s.parent.span_id == failover_route.context.span_id)
        ]
        print(f"   span {failover_route.name!r}, events {[e.name for e in failover_route.events]}")
        for how, attempt in attempts:
            attrs = attempt.attributes or {}
            print(
                f"     {how} {attempt.name!r} attempt={attrs.get('modelwatch.attempt')} "
                f"error.type={attrs.get('error.type')}"
            )
        for point in telemetry.metric_points("modelwatch.failovers"):
            a = point.attributes
            print(
                f"   modelwatch.failovers {a['from']} -> {a['to']} ({a['reason']}): {point.value:g}"
            )
        for point in telemetry.metric_points("modelwatch.circuit.transitions"):
            a = point.attributes
            print(
                f"   modelwatch.circuit.transitions {a['from']} -> {a['to']} "
                f"({a['reason']}): {point.value:g}"
            )


def show_status(router: modelwatch.Router) -> None:
    for s in router.status():
        retry = "" if s.retry_after_s is None else f", next trial in {s.retry_after_s:.1f} s"
        print(f"   status {s.model:28} {s.state:9} last_error={s.last_error}{retry}")


if __name__ == "__main__":
    main()
