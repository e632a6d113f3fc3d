"""Quickstart: monitor a few model calls, print their spans and metrics, serve /metrics.

Runs offline: a local FakeModelServer stands in for the Hugging Face Inference API, and the
real ``huggingface_hub.InferenceClient`` talks to it.

    python examples/quickstart.py
"""

from __future__ import annotations

import urllib.request

from huggingface_hub import InferenceClient, TextGenerationOutput

import modelwatch
from modelwatch.testing import FakeModelServer

FLAN = "google/flan-t5-large"
BART = "facebook/bart-large-cnn"


def main() -> None:
    config = modelwatch.configure(service_name="quickstart", console=True, prometheus_port=0)
    metrics_url = f"http://127.0.0.1:{config.prometheus_port}/metrics"
    print(f"Prometheus endpoint: {metrics_url}\n")

    with FakeModelServer() as server:
        flan = InferenceClient(model=server.model_url(FLAN))
        bart = InferenceClient(model=server.model_url(BART))

        @modelwatch.monitored(
            model=FLAN,
            provider="huggingface",
            analysis="code_review",
            operation="text_generation",
            server_address=server.url,
        )
        def review(code: str) -> TextGenerationOutput:
            # returning the client's output lets modelwatch read the token usage from it
            return flan.text_generation(f"Review: {code}", max_new_tokens=32, details=True)

        @modelwatch.monitored(
            model=BART,
            provider="huggingface",
            operation="summarization",
            analysis="requirement_extraction",
            server_address=server.url,
        )
        def summarize(text: str) -> str:
            summary = bart.summarization(text).summary_text
            # the summarization API returns no usage: record what you know yourself
            call = modelwatch.current_call()
            if call is not None:
                call.record_usage(
                    input_tokens=len(text.split()), output_tokens=len(summary.split())
                )
            return summary

        print("review:", review("def add(a, b): return a - b").generated_text)
        print("summary:", summarize("The service must answer in under 5 seconds. " * 5))

        server.fail(FLAN, "server_error", times=1)
        try:
            review("x = 1")
        except Exception as exc:  # the monitored call re-raises the client's own exception
            print(f"review failed as expected: {type(exc).__name__}")

        modelwatch.flush()
        print("\nA few lines of the /metrics page served while this runs:")
        page = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
        for line in page.splitlines():
            if line.startswith(
                (
                    "gen_ai_client_operation_duration_seconds_count",
                    "modelwatch_cost_usd_total",
                    "gen_ai_client_token_usage_sum",
                )
            ):
                print("  " + line.replace(',otel_scope_schema_url=""', ""))
    modelwatch.shutdown()


if __name__ == "__main__":
    main()
