"""A small AI engine with modelwatch, to copy into your own service.

Three analysis types, each behind a ``modelwatch.Router`` with a primary and a backup model
(code_review's router hedges: a primary slow to answer is raced by its backup); a daily cost
budget on the most expensive model that, once spent, sends its calls to the cheaper backup;
health endpoints under ``/health`` and a public status page under ``/status``; Prometheus
metrics on ``/metrics``; one HTTP route, ``POST /analyze/<analysis>`` with ``{"text": "..."}``.
Standard library HTTP (``wsgiref``): swap in Flask, FastAPI or anything else, the modelwatch
parts stay the same.

Run it (everything on 127.0.0.1; with no ``HF_BASE_URL`` it starts a local fake model server)::

    python examples/engine.py
    curl -s -XPOST localhost:8000/analyze/code_review -d '{"text": "def f(): return 1/0"}'
    curl -s localhost:8000/health/ready
    open http://localhost:8000/status       # the status page
    curl -s localhost:9464/metrics | grep modelwatch_

Point it at real endpoints with ``HF_BASE_URL`` (models are served at
``{HF_BASE_URL}/models/{model}``, as the Hugging Face Inference API does), ``HF_TOKEN``,
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``.

``modelwatch demo`` runs this very engine (``modelwatch.demo``): it passes shorter timeouts and
breaker settings, a hedge delay and a budget scaled to a one-minute run, and a ``wrap`` hook
that records every model call, through the keyword arguments of :func:`build_routers`,
:func:`build_budgets` and :func:`build_health`.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import openai
from huggingface_hub import InferenceClient

import modelwatch
from modelwatch.health import synthetic

#: analysis -> (primary, backup): (model, provider, operation) each
ANALYSES: dict[str, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    "code_review": (
        ("google/flan-t5-large", "huggingface", "text_generation"),
        ("meta-llama/Llama-3.1-8B-Instruct", "huggingface", "chat"),
    ),
    "requirement_extraction": (
        ("facebook/bart-large-cnn", "huggingface", "summarization"),
        ("sshleifer/distilbart-cnn-12-6", "huggingface", "summarization"),
    ),
    "tech_recommendation": (
        ("google/flan-t5-xl", "huggingface", "text_generation"),
        ("gpt-4o-mini", "openai", "chat"),
    ),
}
#: analysis -> its router's hedge: a primary that has not answered after its recent p95
#: latency is raced by the backup (``modelwatch.Hedge``; first answer wins)
HEDGES: dict[str, modelwatch.Hedge] = {"code_review": modelwatch.Hedge()}
#: model -> USD a day; once spent, routers skip the model and answer with the next backend
BUDGETS: dict[str, float] = {"google/flan-t5-xl": 25.0}
PROMPTS = {
    "code_review": "Review this code and list its problems: {}",
    "requirement_extraction": "{}",
    "tech_recommendation": "Recommend a technology for: {}",
}


#: a hook around each model function: ``wrap(analysis, model, fn)`` returns the function to call
Wrap = Callable[[str, str, Callable[[str], str]], Callable[[str], str]]


def _record_usage(usage: Any) -> None:
    """Tell modelwatch a chat call's token counts: prices per token need them."""
    call = modelwatch.current_call()
    if call is not None and usage is not None:
        call.record_usage(usage.prompt_tokens, usage.completion_tokens)


def model_function(
    model: str,
    operation: str,
    provider: str,
    hf_base_url: str,
    openai_base_url: str,
    *,
    timeout_s: float = 20.0,
) -> Callable[[str], str]:
    """A function that sends a prompt to ``model`` through its real client."""
    if provider == "openai":
        client = openai.OpenAI(
            base_url=openai_base_url,
            api_key=os.environ.get("OPENAI_API_KEY", "sk-local-fake"),
            timeout=timeout_s,
            max_retries=0,  # the router retries and fails over, not the client
        )

        def openai_chat(prompt: str) -> str:
            out = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], max_tokens=64
            )
            _record_usage(out.usage)
            return out.choices[0].message.content or ""

        return openai_chat

    hf = InferenceClient(
        model=f"{hf_base_url}/models/{model}", token=os.environ.get("HF_TOKEN"), timeout=timeout_s
    )
    if operation == "summarization":
        return lambda text: hf.summarization(text).summary_text
    if operation == "chat":

        def hf_chat(prompt: str) -> str:
            out = hf.chat_completion(messages=[{"role": "user", "content": prompt}], max_tokens=64)
            _record_usage(out.usage)
            return out.choices[0].message.content or ""

        return hf_chat
    return lambda prompt: hf.text_generation(prompt, max_new_tokens=64)


def build_routers(
    hf_base_url: str,
    openai_base_url: str,
    *,
    breaker: modelwatch.BreakerPolicy | None = None,
    retry: modelwatch.RetryPolicy | None = None,
    timeout_s: float = 30.0,
    attempt_timeout_s: float = 25.0,
    client_timeout_s: float = 20.0,
    wrap: Wrap | None = None,
    canaries: Mapping[str, modelwatch.Canary] | None = None,
    hedges: Mapping[str, modelwatch.Hedge] | None = None,
) -> dict[str, modelwatch.Router]:
    """One router per analysis: the primary first, then its backup.

    ``hedges`` (default :data:`HEDGES`) gives an analysis' router a ``modelwatch.Hedge``.

    ``canaries`` puts a candidate version of an analysis' primary on trial (served at the
    endpoint ``{model}-v2``, version ``"v2"`` against the primary's ``"v1"``): it takes a share
    of the calls and is rolled back on its own if it does worse (``modelwatch.Canary``).
    The keyword arguments are the production settings; ``modelwatch demo`` passes shorter ones.
    """
    canaries = canaries or {}
    hedges = HEDGES if hedges is None else hedges

    def backend(analysis: str, model: str, provider: str, operation: str, **more: Any) -> Any:
        endpoint = f"{model}-v2" if "canary" in more else model
        fn = model_function(
            endpoint, operation, provider, hf_base_url, openai_base_url, timeout_s=client_timeout_s
        )
        if wrap is not None:
            fn = wrap(analysis, endpoint, fn)
        return modelwatch.Backend(
            fn,
            model=model,
            provider=provider,
            operation=operation,
            analysis=analysis,
            probe=functools.partial(fn, "ping"),  # an open breaker sees recovery
            **more,
        )

    routers = {}
    for analysis, models in ANALYSES.items():
        trial = canaries.get(analysis)
        primary, *others = models
        backends = [backend(analysis, *primary, **({"version": "v1"} if trial else {}))]
        if trial is not None:
            name = f"{primary[0]}@v2"
            backends.append(backend(analysis, *primary, version="v2", name=name, canary=trial))
        backends += [backend(analysis, *other) for other in others]
        routers[analysis] = modelwatch.Router(
            analysis,
            backends,
            breaker=breaker or modelwatch.BreakerPolicy(consecutive_failures=3, open_s=10.0),
            retry=retry or modelwatch.RetryPolicy(max_retries=1),
            timeout_s=timeout_s,
            attempt_timeout_s=attempt_timeout_s,
            hedge=hedges.get(analysis),
        )
    return routers


def build_budgets(
    limits: Mapping[str, float] | None = None,
    *,
    period: Literal["hour", "day", "week", "month"] | float = "day",
    suffix: str = "",
) -> list[modelwatch.Budget]:
    """A cost budget per model of ``limits`` (default :data:`BUDGETS`, USD per ``period``)
    with ``enforce="skip"``: once a model's budget is spent, the routers skip it and fail
    over to the next backend (the cheaper model) until the period ends. Named after the model
    (plus ``suffix``); ``budget.close()`` each when done. Without a shared store
    (``Budget(store=redis_store(...))``) every process counts its own spend."""
    return [
        modelwatch.Budget(
            f"{model}{suffix}", limit_usd=usd, period=period, model=model, enforce="skip"
        )
        for model, usd in (BUDGETS if limits is None else limits).items()
    ]


def build_health(
    routers: dict[str, modelwatch.Router],
    *,
    health: modelwatch.Health | None = None,
    model_interval_s: float = 30.0,
    analysis_interval_s: float = 60.0,
    model_timeout_s: float = 5.0,
    timeout_s: float = 30.0,
) -> modelwatch.Health:
    """A model check per backend (fed by its breaker) and a synthetic check per analysis."""
    health = health if health is not None else modelwatch.Health()
    for analysis, router in routers.items():
        health.add_router(router, timeout_s=model_timeout_s, interval_s=model_interval_s)
        health.add(
            analysis,
            probe=synthetic(router.call, PROMPTS[analysis].format("ping"), expect=bool),
            kind="analysis",
            critical=True,
            timeout_s=timeout_s,
            interval_s=analysis_interval_s,
        )
    return health


def make_app(
    routers: dict[str, modelwatch.Router], health: modelwatch.Health
) -> Callable[..., Iterable[bytes]]:
    """The engine's WSGI app: ``POST /analyze/<analysis>``, ``/health/...`` and the status
    page at ``/status``."""
    mounted = {"/health": health.wsgi(), "/status": health.status_page_wsgi()}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        for prefix, inner in mounted.items():
            if path == prefix or path.startswith(prefix + "/"):
                environ = {
                    **environ,
                    "SCRIPT_NAME": prefix,
                    "PATH_INFO": path[len(prefix) :] or "/",
                }
                return inner(environ, start_response)
        analysis = path.removeprefix("/analyze/")
        if environ["REQUEST_METHOD"] != "POST" or analysis not in routers:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": "POST /analyze/<analysis>"}']
        size = int(environ.get("CONTENT_LENGTH") or 0)
        text = json.loads(environ["wsgi.input"].read(size) or b"{}").get("text", "")
        try:
            result = routers[analysis].call(PROMPTS[analysis].format(text))
        except modelwatch.AllBackendsFailedError as exc:
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [json.dumps({"error": str(exc), "retry_after_s": exc.retry_after_s}).encode()]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"analysis": analysis, "result": result}).encode()]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(app: Callable[..., Iterable[bytes]], port: int = 8000) -> WSGIServer:
    """Serve ``app`` on 127.0.0.1 in a background thread; stop with ``server.shutdown()``."""
    server = make_server("127.0.0.1", port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="engine-http", daemon=True).start()
    return server


def main() -> None:
    """Run the engine until Ctrl-C."""
    from modelwatch.testing.fake_server import FakeModelServer

    config = modelwatch.configure(service_name="ai-engine", prometheus_port=9464)
    fake = None
    hf_base_url = os.environ.get("HF_BASE_URL")
    openai_base_url = os.environ.get("OPENAI_BASE_URL")
    if hf_base_url is None:
        fake = FakeModelServer().start()
        hf_base_url, openai_base_url = fake.url, fake.openai_base_url
    routers = build_routers(hf_base_url, openai_base_url or "https://api.openai.com/v1")
    budgets = build_budgets()
    health = build_health(routers)
    health.start()
    server = serve(make_app(routers, health))
    print("engine   http://127.0.0.1:8000/analyze/<analysis>")
    print("health   http://127.0.0.1:8000/health")
    print("status   http://127.0.0.1:8000/status")
    print(f"metrics  http://127.0.0.1:{config.prometheus_port}/metrics")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
        health.stop()
        for budget in budgets:
            budget.close()
        for router in routers.values():
            router.close()
        if fake is not None:
            fake.stop()
        modelwatch.shutdown()


if __name__ == "__main__":
    main()
