"""The Hugging Face client, monitored with no change at the call sites.

Run it:  python examples/huggingface_client.py
It starts modelwatch's FakeModelServer on 127.0.0.1 (no network, no token needed) and prints
the spans and metric points the ordinary InferenceClient calls produced. Point the client at a
real model (InferenceClient(model="google/flan-t5-large", token=...)) and nothing else changes.
"""

from __future__ import annotations

import contextlib

from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

import modelwatch
import modelwatch.huggingface
from modelwatch.testing import capture
from modelwatch.testing.fake_server import FakeModelServer

FLAN = "google/flan-t5-large"
BART = "facebook/bart-large-cnn"


def ai_engine(client: InferenceClient, server: FakeModelServer) -> None:
    """Ordinary application code: not one modelwatch call in it."""
    client.text_generation("Review: def add(a, b): return a - b", details=True)
    for _token in client.text_generation("Stream the requirements back", stream=True):
        pass
    client.chat_completion([{"role": "user", "content": "Recommend a queue"}], max_tokens=8)
    client.summarization("Celery runs tasks. Redis brokers them.", model=server.model_url(BART))
    server.fail(FLAN, "loading", times=1)  # the next call gets a 503 "model is loading"
    with contextlib.suppress(HfHubHTTPError):
        client.text_generation("This one fails")


def main() -> None:
    modelwatch.huggingface.instrument()
    try:
        models = {FLAN: "text-generation", BART: "summarization"}
        with (
            FakeModelServer(models=models) as server,
            capture() as captured,
            InferenceClient(model=server.model_url(FLAN)) as client,
        ):
            # an explicit @monitored around a call of the same model does not double count
            with modelwatch.monitored(
                model=FLAN,
                provider="huggingface",
                operation="text_generation",
                analysis="code_review",
            ):
                client.text_generation("nested call", details=True)
            ai_engine(client, server)
            for span in captured.spans:
                attributes = dict(span.attributes or {})
                print(
                    f"{span.name:<40} tokens in/out="
                    f"{attributes.get('gen_ai.usage.input_tokens')}/"
                    f"{attributes.get('gen_ai.usage.output_tokens')} "
                    f"error={attributes.get('error.type')}"
                )
            for point in captured.metric_points("gen_ai.client.operation.duration"):
                print("duration points:", point.count, dict(point.attributes))
    finally:
        modelwatch.huggingface.uninstrument()


if __name__ == "__main__":
    main()
