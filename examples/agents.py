"""Agent and tool steps: one trace from the orchestrator down to every model call.

Run it:  python examples/agents.py   (prints the spans; no network, no collector needed)

The "model" here is a local function; in a real service it would be an InferenceClient or
OpenAI call, and `modelwatch.huggingface.instrument()` would monitor it with no decorator.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from opentelemetry.sdk.trace import ReadableSpan

import modelwatch
from modelwatch.testing import capture


@modelwatch.monitored(
    model="google/flan-t5-large",
    provider="huggingface",
    operation="text_generation",
    analysis="requirement_extraction",
)
def ask_model(prompt: str) -> str:
    return f"answer to {prompt!r}"


@modelwatch.agent_step("web_search", kind="tool")
def web_search(query: str) -> list[str]:
    return [f"https://example.org/{query}"]


@modelwatch.agent_step("researcher")
async def research(topic: str) -> str:
    pages = await asyncio.to_thread(web_search, topic)  # to_thread keeps the context
    return ask_model(f"summarise {pages[0]}")


@modelwatch.agent_step("reviewer")
def review(drafts: list[str]) -> list[str]:
    # concurrent.futures loses the context: context_executor carries it into the pool
    with modelwatch.context_executor(ThreadPoolExecutor(max_workers=2)) as pool:
        return list(pool.map(ask_model, drafts))


@modelwatch.agent_step("orchestrator")
async def orchestrate(topics: list[str]) -> list[str]:
    drafts = await asyncio.gather(*(research(t) for t in topics))  # each branch keeps its parent
    return review(list(drafts))


def main() -> None:
    with capture() as captured:
        asyncio.run(orchestrate(["celery", "otel"]))
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(captured.spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent, []).append(span)

    def show(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            print("  " * depth + span.name)
            assert span.context is not None
            show(span.context.span_id, depth + 1)

    show(None, 0)
    print("agent steps recorded:", captured.metric_count("gen_ai.invoke_agent.duration"))


if __name__ == "__main__":
    main()
