"""OpenAI shapes: fill what a model may leave empty, so every object validates against the spec.

A model's `ChatResponse` / `ChatChunk` becomes a `chat.completion` / `chat.completion.chunk` dict
with its id, model, object, finish reasons, logprobs and usage in the form OpenAI's clients expect.
"""

from __future__ import annotations

import os
from typing import Any

from chatmodels.exceptions import InvalidModelOutput
from chatmodels.types import ChatChoiceDelta, ChatChunk, ChatChunkChoice, ChatResponse


def completion_id() -> str:
    return f"chatcmpl-{os.urandom(16).hex()}"


def output_dict(value: ChatResponse | ChatChunk) -> dict[str, Any]:
    """`value.to_dict()`; an answer nested past the recursion limit (deep `custom_outputs`) is
    the model's fault, a 502, not the RecursionError that would blame the request."""
    try:
        return value.to_dict()
    except RecursionError:
        raise InvalidModelOutput(
            f"the model's {type(value).__name__} is nested too deeply to be sent as JSON"
        ) from None


def chunk_of(completion: dict[str, Any]) -> ChatChunk:
    """A whole `chat.completion` as one chunk (for models without `predict_stream`)."""
    choices = []
    for choice in completion["choices"]:
        message = choice["message"]
        delta = ChatChoiceDelta(
            role=message.get("role", "assistant"),
            content=message.get("content"),
            refusal=message.get("refusal"),
            tool_calls=[
                # Dicts, which constructing the delta makes ToolCallDeltas.
                {"index": i, **call}  # type: ignore[misc]
                for i, call in enumerate(message.get("tool_calls") or [])
            ]
            or None,
        )
        choices.append(
            ChatChunkChoice(
                delta=delta, index=choice["index"], finish_reason=choice["finish_reason"]
            )
        )
    return ChatChunk(
        choices=choices,
        usage=completion.get("usage"),
        custom_outputs=completion.get("custom_outputs"),
    )


def completion_dict(data: dict[str, Any], *, served_name: str) -> dict[str, Any]:
    data["id"] = data.get("id") or completion_id()
    data["model"] = data.get("model") or served_name
    data["object"] = "chat.completion"
    for choice in data["choices"]:
        message = choice["message"]
        message["content"] = _text_content(message.get("content"))
        message.setdefault("refusal", None)
        choice["finish_reason"] = choice.get("finish_reason") or "stop"
        choice["logprobs"] = _logprobs(choice.get("logprobs"))
    usage = usage_of(data.pop("usage", None))
    if usage is not None:  # left out when the model reported none
        data["usage"] = usage
    return data


def chunk_dict(data: dict[str, Any], *, stream_id: str, created: int, model: str) -> dict[str, Any]:
    data["id"] = stream_id
    data["created"] = created
    data["model"] = model
    data["object"] = "chat.completion.chunk"
    for choice in data["choices"]:
        choice.setdefault("finish_reason", None)
        if "logprobs" in choice:
            choice["logprobs"] = _logprobs(choice["logprobs"])
    return data


def _text_content(content: Any) -> str | None:
    # A response message's content is a string in the OpenAI format: join text parts.
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content


def _logprobs(logprobs: dict[str, Any] | None) -> dict[str, Any] | None:
    if logprobs is None:
        return None
    return {
        "content": _token_logprobs(logprobs.get("content")),
        "refusal": _token_logprobs(logprobs.get("refusal")),
    }


def _token_logprobs(tokens: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    # The spec requires `bytes` (null allowed) on every token and every top token.
    for token in tokens or ():
        token.setdefault("bytes", None)
        for top in token.get("top_logprobs") or ():
            top.setdefault("bytes", None)
    return tokens


def usage_of(usage: dict[str, Any] | None) -> dict[str, int] | None:
    """OpenAI's `usage` from what the model reported, or None when it did not report both the
    prompt and the completion counts: a count is never made up (`total_tokens` is their sum
    when the model left it out)."""
    if not usage:
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if prompt is None or completion is None:
        return None
    total = usage.get("total_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if total is not None else prompt + completion,
    }
