"""Deterministic response bodies of :class:`~modelwatch.testing.fake_server.FakeModelServer`.

Every answer is a pure function of the request (plus the model id), so tests can assert on
content and token usage. Tokens are whitespace-separated words: a prompt of 7 words costs
7 input tokens (chat messages add 3 tokens each for the role framing, as real chat
templates do), and every generated word is one output token.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

#: Tasks the fake Hugging Face endpoint knows (the ``pipeline_tag`` of a real model).
TASKS: Final = (
    "text-generation",
    "text2text-generation",
    "summarization",
    "translation",
    "feature-extraction",
    "conversational",
)

#: Output tokens generated when the request sets no limit.
DEFAULT_MAX_TOKENS: Final = 16
#: Words kept in a summary when the request sets no limit.
SUMMARY_WORDS: Final = 12
#: Size of the deterministic embedding vectors.
EMBEDDING_DIM: Final = 8
#: Tokens a chat message costs on top of its words (role and separators).
MESSAGE_OVERHEAD_TOKENS: Final = 3

_TGI_KEYS: Final = frozenset(
    {
        "adapter_id",
        "best_of",
        "decoder_input_details",
        "details",
        "do_sample",
        "frequency_penalty",
        "grammar",
        "max_new_tokens",
        "repetition_penalty",
        "return_full_text",
        "seed",
        "stop",
        "temperature",
        "top_k",
        "top_n_tokens",
        "top_p",
        "typical_p",
        "watermark",
    }
)
_FEATURE_KEYS: Final = frozenset(
    {
        "normalize",
        "prompt_name",
        "truncate",
        "truncation_direction",
        "dimensions",
        "encoding_format",
    }
)
_SUMMARY_KEYS: Final = frozenset(
    {"clean_up_tokenization_spaces", "generate_parameters", "truncation"}
)
_TRANSLATION_KEYS: Final = frozenset({"src_lang", "tgt_lang"})


def count_tokens(text: str) -> int:
    """Tokens in ``text`` by the fake server's rule: one per whitespace-separated word."""
    return len(text.split())


def token_id(word: str) -> int:
    """A stable fake vocabulary id for ``word``."""
    return zlib.crc32(word.encode()) % 32000


def infer_task(model: str, payload: Mapping[str, Any]) -> str:
    """Guess the pipeline of a Hugging Face request the way the payload and model id suggest.

    ``huggingface_hub`` sends every task to the same URL when it is given an endpoint URL,
    so the fake reads the payload: ``text_generation`` always sends ``stream``, feature
    extraction sends its options at the root, summarization and translation send their own
    ``parameters``. A bare ``{"inputs": ...}`` falls back on the model id.
    """
    parameters = payload.get("parameters")
    params = parameters if isinstance(parameters, Mapping) else {}
    if "stream" in payload or _TGI_KEYS.intersection(params):
        return "text-generation"
    if _FEATURE_KEYS.intersection(payload) or not isinstance(payload.get("inputs"), str):
        return "feature-extraction"
    if _SUMMARY_KEYS.intersection(params):
        return "summarization"
    if _TRANSLATION_KEYS.intersection(params):
        return "translation"
    name = model.lower()
    if any(hint in name for hint in ("summar", "bart", "pegasus")):
        return "summarization"
    if any(hint in name for hint in ("embed", "sentence-transformers", "minilm", "bge", "mpnet")):
        return "feature-extraction"
    if any(hint in name for hint in ("opus-mt", "translat")):
        return "translation"
    if "t5" in name:
        return "text2text-generation"
    return "text-generation"


@dataclass(frozen=True)
class Generation:
    """A deterministic completion: its words, token counts and why it stopped."""

    words: tuple[str, ...]
    input_tokens: int
    finish_reason: str

    @property
    def text(self) -> str:
        """The completion as one string."""
        return " ".join(self.words)

    @property
    def output_tokens(self) -> int:
        """Generated tokens (one per word)."""
        return len(self.words)

    def pieces(self) -> Iterator[str]:
        """The completion split into stream chunks whose concatenation is :attr:`text`."""
        for index, word in enumerate(self.words):
            yield word if index == 0 else f" {word}"


def generate(model: str, prompt: str, max_tokens: int | None, input_tokens: int) -> Generation:
    """Echo ``prompt`` back, tagged with the model id, cut at ``max_tokens`` words."""
    limit = DEFAULT_MAX_TOKENS if max_tokens is None or max_tokens <= 0 else max_tokens
    words = (f"[{model}]", *prompt.split())
    finish = "length" if len(words) > limit else "stop"
    return Generation(words[:limit], input_tokens, finish)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        ]
        return " ".join(parts)
    return ""


def chat_generation(model: str, payload: Mapping[str, Any]) -> Generation:
    """The completion of an OpenAI-style chat request: an echo of the last user message."""
    messages = payload.get("messages")
    items = [m for m in messages if isinstance(m, Mapping)] if isinstance(messages, list) else []
    input_tokens = sum(
        count_tokens(_message_text(m.get("content"))) + MESSAGE_OVERHEAD_TOKENS for m in items
    )
    user = [_message_text(m.get("content")) for m in items if m.get("role") == "user"]
    max_tokens = _int_or_none(payload.get("max_completion_tokens"))
    if max_tokens is None:
        max_tokens = _int_or_none(payload.get("max_tokens"))
    return generate(model, user[-1] if user else "", max_tokens, input_tokens)


def _request_id(kind: str, model: str, payload: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(repr((model, sorted(payload.items(), key=str))).encode()).hexdigest()
    return f"{kind}-{digest[:24]}"


def _usage(gen: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": gen.input_tokens,
        "completion_tokens": gen.output_tokens,
        "total_tokens": gen.input_tokens + gen.output_tokens,
    }


def chat_completion(model: str, payload: Mapping[str, Any], gen: Generation) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object for ``gen``."""
    return {
        "id": _request_id("chatcmpl", model, payload),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_modelwatch_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": gen.text},
                "logprobs": None,
                "finish_reason": gen.finish_reason,
            }
        ],
        "usage": _usage(gen),
    }


def chat_chunks(
    model: str, payload: Mapping[str, Any], gen: Generation
) -> Iterator[dict[str, Any]]:
    """OpenAI ``chat.completion.chunk`` objects for ``gen``, as a streaming endpoint sends them.

    A role chunk, one chunk per token, a chunk with the finish reason, and, when the request
    asked for ``stream_options={"include_usage": True}``, a last chunk with no choices and the
    usage.
    """
    base = {
        "id": _request_id("chatcmpl", model, payload),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_modelwatch_fake",
    }

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    yield chunk({"role": "assistant", "content": ""}, None)
    for piece in gen.pieces():
        yield chunk({"content": piece}, None)
    yield chunk({}, gen.finish_reason)
    options = payload.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage"):
        yield {**base, "choices": [], "usage": _usage(gen)}


def completion_generation(model: str, payload: Mapping[str, Any]) -> Generation:
    """The completion of an OpenAI legacy completions request: an echo of the prompt."""
    prompt = payload.get("prompt")
    text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt or []))
    return generate(model, text, _int_or_none(payload.get("max_tokens")), count_tokens(text))


def completion(model: str, payload: Mapping[str, Any], gen: Generation) -> dict[str, Any]:
    """An OpenAI ``text_completion`` object for ``gen``."""
    choice = {"index": 0, "text": gen.text, "logprobs": None, "finish_reason": gen.finish_reason}
    return {
        "id": _request_id("cmpl", model, payload),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": _usage(gen),
    }


def completion_chunks(
    model: str, payload: Mapping[str, Any], gen: Generation
) -> Iterator[dict[str, Any]]:
    """Streamed ``text_completion`` objects: one per token, the finish reason on the last one,
    then the usage when ``stream_options={"include_usage": True}``."""
    base = completion(model, payload, gen)
    pieces = list(gen.pieces())
    for index, piece in enumerate(pieces):
        finish = gen.finish_reason if index == len(pieces) - 1 else None
        choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
        yield {**base, "choices": [choice], "usage": None}
    options = payload.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage"):
        yield {**base, "choices": [], "usage": _usage(gen)}


def openai_embeddings(model: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI embeddings answer: one vector per input string."""
    raw = payload.get("input")
    inputs = [str(item) for item in raw] if isinstance(raw, list) else [str(raw or "")]
    tokens = sum(count_tokens(text) for text in inputs)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": embedding(text)}
            for i, text in enumerate(inputs)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def tgi_generation(model: str, payload: Mapping[str, Any]) -> Generation:
    """The completion of a text-generation (TGI) request."""
    prompt = str(payload.get("inputs", ""))
    parameters = payload.get("parameters")
    params = parameters if isinstance(parameters, Mapping) else {}
    return generate(model, prompt, _int_or_none(params.get("max_new_tokens")), count_tokens(prompt))


def _token(word: str, index: int) -> dict[str, Any]:
    return {
        "id": token_id(word),
        "text": word,
        "logprob": round(-0.1 * (index + 1), 4),
        "special": False,
    }


def tgi_response(payload: Mapping[str, Any], gen: Generation) -> list[dict[str, Any]]:
    """The body of a non-streaming text-generation answer (TGI's compatible ``/`` route)."""
    parameters = payload.get("parameters")
    params = parameters if isinstance(parameters, Mapping) else {}
    prompt = str(payload.get("inputs", ""))
    text = f"{prompt}{gen.text}" if params.get("return_full_text") else gen.text
    item: dict[str, Any] = {"generated_text": text}
    if params.get("details"):
        item["details"] = {
            "finish_reason": gen.finish_reason,
            "generated_tokens": gen.output_tokens,
            "seed": _int_or_none(params.get("seed")),
            "prefill": [],
            "tokens": [_token(piece, i) for i, piece in enumerate(gen.pieces())],
        }
    return [item]


def tgi_events(gen: Generation) -> Iterator[dict[str, Any]]:
    """Server-sent events of a streaming text-generation answer, TGI style.

    One event per token; the last one also carries ``generated_text`` and ``details``.
    """
    pieces = list(gen.pieces())
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        yield {
            "index": index + 1,
            "token": _token(piece, index),
            "top_tokens": None,
            "generated_text": gen.text if last else None,
            "details": {
                "finish_reason": gen.finish_reason,
                "generated_tokens": gen.output_tokens,
                "input_length": gen.input_tokens,
                "seed": None,
            }
            if last
            else None,
        }


def summarize(text: str, payload: Mapping[str, Any]) -> list[dict[str, str]]:
    """A summarization answer: the first sentence, at most :data:`SUMMARY_WORDS` words."""
    del payload
    first = text.split(". ", maxsplit=1)[0].strip()
    words = first.split()[:SUMMARY_WORDS]
    return [{"summary_text": " ".join(words)}]


def translate(text: str) -> list[dict[str, str]]:
    """A translation answer: the words in reverse order (deterministic, obviously fake)."""
    return [{"translation_text": " ".join(reversed(text.split()))}]


def text2text(model: str, text: str) -> list[dict[str, str]]:
    """A text2text-generation answer (FLAN-T5 style)."""
    return [{"generated_text": generate(model, text, None, count_tokens(text)).text}]


def embedding(text: str) -> list[float]:
    """A deterministic unit-free vector of :data:`EMBEDDING_DIM` floats in [-1, 1] for ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 127.5 - 1.0, 6) for byte in digest[:EMBEDDING_DIM]]


def embeddings(inputs: object) -> list[float] | list[list[float]]:
    """Feature extraction: one vector for a string, a list of vectors for a list of strings."""
    if isinstance(inputs, list):
        return [embedding(str(item)) for item in inputs]
    return embedding(str(inputs))


def endpoint_info(model: str, task: str | None) -> dict[str, Any]:
    """The ``GET /info`` answer of a TGI/TEI endpoint."""
    return {
        "model_id": model,
        "model_sha": None,
        "model_dtype": "torch.float16",
        "model_device_type": "cpu",
        "model_pipeline_tag": task,
        "max_concurrent_requests": 128,
        "max_input_length": 4095,
        "max_total_tokens": 4096,
        "version": "fake",
    }


def models_list(models: Sequence[str]) -> dict[str, Any]:
    """The ``GET /v1/models`` answer."""
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "modelwatch-fake"}
            for m in models
        ],
    }
