"""The serving wrapper: a per-process cache of loaded versions, and invoke() / invoke_stream().

A loaded model is keyed by the immutable (version id, digest): loaded once, `load_context`
once, shared by every thread. Which version an alias or "latest" means is never cached here;
the API resolves it on every request.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings

from chatmodels import packaging
from chatmodels.exceptions import ChatModelsError, ModelLoadError, ModelRaised
from chatmodels.models import ModelVersion
from chatmodels.types import ChatChoiceDelta, ChatChunk, ChatChunkChoice, ChatRequest

logger = logging.getLogger(__name__)

_loaded: dict[tuple[int, str], packaging.LoadedModel] = {}
_loading_locks: dict[tuple[int, str], threading.Lock] = {}
_registry_lock = threading.Lock()


def get_loaded_model(version: ModelVersion) -> packaging.LoadedModel:
    """The loaded model of `version`, loading it on first use (one loader per version)."""
    key = (version.pk, version.digest)
    loaded = _loaded.get(key)
    if loaded is not None:
        return loaded
    with _registry_lock:
        lock = _loading_locks.setdefault(key, threading.Lock())
    with lock:
        loaded = _loaded.get(key)
        if loaded is None:
            loaded = _load(version)
            _loaded[key] = loaded
    return loaded


def _load(version: ModelVersion) -> packaging.LoadedModel:
    started = time.perf_counter()
    try:
        with version.package.open("rb") as package_file:
            data = package_file.read()
        loaded = packaging.open_package(
            data, expected_digest=version.digest, work_dir=settings.CHATMODELS_CACHE_DIR
        )
    except ChatModelsError as error:
        logger.error("cannot load %s: %s", version, error, exc_info=error.__cause__)
        raise ModelLoadError(f"model version {version} could not be loaded") from error
    except OSError as error:
        logger.error("cannot read the package of %s: %s", version, error)
        raise ModelLoadError(f"model version {version} could not be loaded") from error
    logger.info(
        "loaded %s",
        version,
        extra={"digest": version.digest, "load_ms": round((time.perf_counter() - started) * 1e3)},
    )
    return loaded


def clear_cache() -> None:
    """Forget every loaded model (tests, and operators reclaiming memory)."""
    with _registry_lock:
        _loaded.clear()
        _loading_locks.clear()


def completion_id() -> str:
    return f"chatcmpl-{os.urandom(16).hex()}"


# ---------------------------------------------------------------------------------------------
# Invocation


def invoke(version: ModelVersion, request: ChatRequest, *, served_name: str) -> dict[str, Any]:
    """Run `predict` and return an OpenAI `chat.completion` dict (502 on invalid output)."""
    loaded = get_loaded_model(version)
    messages, params = request.split()
    try:
        value = loaded.model.predict(loaded.context, messages, params)
    except Exception as error:
        logger.exception("predict of %s raised", version)
        raise ModelRaised(f"model {served_name} raised an error while answering") from error
    response = packaging.check_response(value)
    return completion_dict(response.to_dict(), served_name=served_name)


def invoke_stream(
    version: ModelVersion, request: ChatRequest, *, served_name: str, include_usage: bool = False
) -> Iterator[dict[str, Any]]:
    """OpenAI `chat.completion.chunk` dicts, from `predict_stream` or from one `predict` answer.

    The first chunk is computed before this returns, so a model that fails at once is answered
    with an ordinary error response; a failure later raises from the iterator.
    """
    loaded = get_loaded_model(version)
    messages, params = request.split()
    stream_id, created = completion_id(), int(time.time())
    if loaded.streams:
        chunks = _checked_chunks(loaded, messages, params, served_name=served_name)
    else:
        chunks = iter([_chunk_of(invoke(version, request, served_name=served_name))])
    first = next(chunks, None)

    def generate() -> Iterator[dict[str, Any]]:
        usage = None
        for chunk in itertools.chain([] if first is None else [first], chunks):
            usage = chunk.usage or usage
            data = chunk.to_dict()
            data.pop("usage", None)
            if data["choices"] or not include_usage:
                yield chunk_dict(data, stream_id=stream_id, created=created, model=served_name)
        if include_usage:
            final = {"choices": [], "usage": usage.to_dict() if usage else {}}
            yield chunk_dict(final, stream_id=stream_id, created=created, model=served_name)

    return generate()


def _checked_chunks(loaded, messages, params, *, served_name: str) -> Iterator[ChatChunk]:
    try:
        iterator = iter(loaded.model.predict_stream(loaded.context, messages, params))
    except Exception as error:
        logger.exception("predict_stream of %s raised", served_name)
        raise ModelRaised(f"model {served_name} raised an error while answering") from error
    while True:
        try:
            value = next(iterator)
        except StopIteration:
            return
        except Exception as error:
            logger.exception("predict_stream of %s raised", served_name)
            raise ModelRaised(f"model {served_name} raised an error while streaming") from error
        yield packaging.check_chunk(value)


def _chunk_of(completion: dict[str, Any]) -> ChatChunk:
    """A whole `chat.completion` as one chunk (for models without `predict_stream`)."""
    choices = []
    for choice in completion["choices"]:
        message = choice["message"]
        delta = ChatChoiceDelta(
            role=message.get("role", "assistant"),
            content=message.get("content"),
            refusal=message.get("refusal"),
            tool_calls=[
                {"index": i, **call} for i, call in enumerate(message.get("tool_calls") or [])
            ]
            or None,
        )
        choices.append(
            ChatChunkChoice(
                delta=delta, index=choice["index"], finish_reason=choice["finish_reason"]
            )
        )
    return ChatChunk(choices=choices, usage=completion.get("usage"))


# ---------------------------------------------------------------------------------------------
# OpenAI shapes: fill what a model may leave empty so every object validates against the spec.


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
    if "usage" in data:
        data["usage"] = _usage(data["usage"])
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
    if "usage" in data:
        data["usage"] = _usage(data["usage"])
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


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    total = usage.get("total_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if total is not None else prompt + completion,
    }
