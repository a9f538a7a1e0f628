"""The serving wrapper: a per-process cache of loaded versions, and invoke() / invoke_stream().

A loaded model is keyed by the immutable (version id, digest): loaded once, `load_context`
once, shared by every thread. Which version an alias or "latest" means is never cached here;
the API resolves it on every request.

Sync models run on the request thread; async ones on the process's event loop (`eventloop`).
A stream is produced apart from the request thread (a task on the loop, or a thread of its own
for a sync generator) into a queue, so that the request thread can send keep-alives through a
long silence, give up on a stuck model, and stop the model the moment the client goes away.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings

from chatmodels import metrics, packaging
from chatmodels.exceptions import (
    ChatModelsError,
    InvalidModelOutput,
    ModelLoadError,
    ModelRaised,
    ModelTimeout,
)
from chatmodels.models import package_storage
from chatmodels.selectors import ResolvedVersion
from chatmodels.serving import eventloop
from chatmodels.types import (
    ChatChoiceDelta,
    ChatChunk,
    ChatChunkChoice,
    ChatRequest,
    ChatResponse,
)

logger = logging.getLogger(__name__)

_loaded: dict[tuple[int, str], packaging.LoadedModel] = {}
_loading_locks: dict[tuple[int, str], threading.Lock] = {}
_registry_lock = threading.Lock()

# What a stream yields when the model has been silent for the keep-alive interval.
KEEP_ALIVE = None


def get_loaded_model(version: ResolvedVersion) -> packaging.LoadedModel:
    """The loaded model of `version`, loading it on first use (one loader per version)."""
    key = (version.id, version.digest)
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


def _load(version: ResolvedVersion) -> packaging.LoadedModel:
    started = time.perf_counter()
    try:
        with package_storage().open(version.package, "rb") as package_file:
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
    seconds = time.perf_counter() - started
    metrics.record_model_load(
        model=version.model_name, version=str(version.version), seconds=seconds
    )
    logger.info(
        "loaded %s", version, extra={"digest": version.digest, "load_ms": round(seconds * 1e3)}
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


def invoke(version: ResolvedVersion, request: ChatRequest, *, served_name: str) -> dict[str, Any]:
    """Run `predict` and return an OpenAI `chat.completion` dict (502 on invalid output)."""
    loaded = get_loaded_model(version)
    messages, params = request.split()
    value = _predict(loaded, messages, params, served_name=served_name)
    response = packaging.check_response(value)
    return completion_dict(output_dict(response), served_name=served_name)


def output_dict(value: ChatResponse | ChatChunk) -> dict[str, Any]:
    """`value.to_dict()`; an answer nested past the recursion limit (deep `custom_outputs`) is
    the model's fault, a 502, not the RecursionError that would blame the request."""
    try:
        return value.to_dict()
    except RecursionError:
        raise InvalidModelOutput(
            f"the model's {type(value).__name__} is nested too deeply to be sent as JSON"
        ) from None


def _predict(loaded: packaging.LoadedModel, messages, params, *, served_name: str) -> Any:
    timeout = settings.CHATMODELS_MODEL_TIMEOUT
    try:
        if loaded.predict_is_async:
            return eventloop.run(loaded.predict(messages, params), timeout)
        if timeout is None:
            return loaded.predict(messages, params)
        return _call_with_timeout(lambda: loaded.predict(messages, params), timeout)
    except eventloop.WaitTimedOut:
        raise _timed_out(served_name, timeout) from None
    except Exception as error:
        logger.exception("predict of %s raised", served_name)
        raise ModelRaised(f"model {served_name} raised an error while answering") from error


def _call_with_timeout(function: Callable[[], Any], timeout: float) -> Any:
    """`function()` on a thread of its own, given up on (not stopped: Python cannot) after
    `timeout` seconds, so that the request is answered even when a sync model is stuck."""
    done = threading.Event()
    outcome: list = []

    def call() -> None:
        try:
            outcome.append((True, function()))
        except BaseException as error:  # handed to the waiting thread
            outcome.append((False, error))
        finally:
            done.set()

    threading.Thread(target=call, name="chatmodels-predict", daemon=True).start()
    if not done.wait(timeout):
        raise eventloop.WaitTimedOut(f"no result within {timeout} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _timed_out(served_name: str, timeout: float | None) -> ModelTimeout:
    logger.error("model %s timed out after %s s (CHATMODELS_MODEL_TIMEOUT)", served_name, timeout)
    return ModelTimeout(f"model {served_name} did not answer within {timeout:g} s", param=None)


# ---------------------------------------------------------------------------------------------
# Streams


def invoke_stream(
    version: ResolvedVersion,
    request: ChatRequest,
    *,
    served_name: str,
    include_usage: bool = False,
    on_usage: Callable[[dict[str, Any] | None], None] | None = None,
) -> Iterator[dict[str, Any] | None]:
    """OpenAI `chat.completion.chunk` dicts, from `predict_stream` or from one `predict` answer,
    with KEEP_ALIVE (None) after each keep-alive interval of silence. When the stream has come
    to its end, `on_usage` is called with the usage the model reported (None if it did not),
    whether or not the client asked for it (`include_usage`).

    The first chunk is awaited (for up to one keep-alive interval) before this returns, so a
    model that fails at once is answered with an ordinary error response; a later failure
    raises from the iterator. Closing the iterator stops the model (see `_Feed`).
    """
    loaded = get_loaded_model(version)
    messages, params = request.split()
    feed = _Feed(loaded, messages, params, served_name=served_name)
    try:
        first = feed.next()
        if first is not KEEP_ALIVE and first is not _Feed.END:
            first = _as_chunk(first, loaded_streams=feed.streams, served_name=served_name)
    except BaseException:
        feed.close()
        raise
    chunks = _chunks(
        feed, first, served_name=served_name, include_usage=include_usage, on_usage=on_usage
    )
    return _StoppingIterator(chunks, feed)


class _StoppingIterator:
    """The chunks, as an iterator whose `close()` stops the model even if no chunk was taken
    yet (closing a generator that never started runs none of its `finally`)."""

    def __init__(self, chunks: Iterator[dict[str, Any] | None], feed: _Feed) -> None:
        self._chunks = chunks
        self._feed = feed

    def __iter__(self) -> _StoppingIterator:
        return self

    def __next__(self) -> dict[str, Any] | None:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()
        self._feed.close()


def _chunks(
    feed: _Feed,
    first: Any,
    *,
    served_name: str,
    include_usage: bool,
    on_usage: Callable[[dict[str, Any] | None], None] | None,
) -> Iterator[dict[str, Any] | None]:
    stream_id, created = completion_id(), int(time.time())
    usage = None
    try:
        rest = iter(feed.next, _Feed.END) if first is not _Feed.END else iter(())
        for value in itertools.chain([] if first is _Feed.END else [first], rest):
            if value is KEEP_ALIVE:
                yield KEEP_ALIVE
                continue
            if not isinstance(value, ChatChunk) or value is not first:
                value = _as_chunk(value, loaded_streams=feed.streams, served_name=served_name)
            chunk = value
            usage = chunk.usage or usage
            data = output_dict(chunk)
            data.pop("usage", None)
            # Usage goes in the last chunk only (when asked for): a chunk that carried nothing
            # else, like an upstream's own usage chunk, is not passed on.
            if data["choices"] or not (include_usage or chunk.usage is not None):
                yield chunk_dict(data, stream_id=stream_id, created=created, model=served_name)
    finally:
        feed.close()
    reported = _usage(usage.to_dict() if usage else None)
    if on_usage is not None:
        on_usage(reported)
    if include_usage:
        # `usage: null` when the model reported none: counts are never made up (the spec allows
        # null; a client then knows the server has no count, rather than reading zero tokens).
        final = {"choices": [], "usage": reported}
        yield chunk_dict(final, stream_id=stream_id, created=created, model=served_name)


def _as_chunk(value: Any, *, loaded_streams: bool, served_name: str) -> ChatChunk:
    if loaded_streams:
        return packaging.check_chunk(value)
    response = packaging.check_response(value)
    return _chunk_of(completion_dict(output_dict(response), served_name=served_name))


class _Feed:
    """What a model streams, produced apart from the request thread into a queue.

    Async models: a task on the event loop (`predict_stream`, or `predict` for one chunk).
    Sync models: a thread of its own that iterates `predict_stream` (or calls `predict`).
    `next()` waits at most one keep-alive interval and returns KEEP_ALIVE if nothing came;
    after CHATMODELS_MODEL_TIMEOUT seconds without a chunk it stops the model and raises.
    `close()` stops the model: the task is cancelled at once (CancelledError at its `await`),
    the thread closes the generator as soon as its current `next()` returns.
    """

    END = object()
    _VALUE, _ERROR, _DONE = range(3)

    def __init__(self, loaded: packaging.LoadedModel, messages, params, *, served_name: str):
        self.streams = loaded.streams
        self.served_name = served_name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopped = threading.Event()
        self._finished = False
        self._future = None
        self._last_item = time.monotonic()
        if loaded.stream_is_async if loaded.streams else loaded.predict_is_async:
            self._future = eventloop.submit(self._produce_async(loaded, messages, params))
        else:
            threading.Thread(
                target=self._produce_sync,
                args=(loaded, messages, params),
                name="chatmodels-stream",
                daemon=True,
            ).start()

    # -- producers (not on the request thread)

    async def _produce_async(self, loaded: packaging.LoadedModel, messages, params) -> None:
        put = self._queue.put
        try:
            if self.streams:
                generator = loaded.predict_stream(messages, params)
                try:
                    async for value in generator:
                        put((self._VALUE, value))
                finally:
                    await generator.aclose()
            else:
                put((self._VALUE, await loaded.predict(messages, params)))
        except Exception as error:
            put((self._ERROR, error))
        else:
            put((self._DONE, None))

    def _produce_sync(self, loaded: packaging.LoadedModel, messages, params) -> None:
        put = self._queue.put
        try:
            if not self.streams:
                put((self._VALUE, loaded.predict(messages, params)))
            else:
                generator = iter(loaded.predict_stream(messages, params))
                try:
                    for value in generator:
                        put((self._VALUE, value))
                        if self._stopped.is_set():
                            break
                finally:
                    close = getattr(generator, "close", None)
                    if close is not None:
                        close()
        except Exception as error:
            put((self._ERROR, error))
        else:
            put((self._DONE, None))

    # -- the request thread's side

    def next(self) -> Any:
        """The next value the model gave, KEEP_ALIVE after a silence, or END."""
        if self._finished:
            return self.END
        interval = settings.CHATMODELS_STREAM_KEEPALIVE
        timeout = settings.CHATMODELS_MODEL_TIMEOUT
        wait = interval
        if timeout is not None:
            left = self._last_item + timeout - time.monotonic()
            wait = max(0.0, min(interval, left))
        try:
            kind, value = self._queue.get(timeout=wait)
        except queue.Empty:
            if timeout is not None and time.monotonic() - self._last_item >= timeout:
                self.close()
                raise _timed_out(self.served_name, timeout) from None
            return KEEP_ALIVE
        self._last_item = time.monotonic()
        if kind == self._VALUE:
            return value
        self._finished = True
        if kind == self._ERROR:
            logger.error("predict_stream of %s raised", self.served_name, exc_info=value)
            raise ModelRaised(
                f"model {self.served_name} raised an error while streaming"
            ) from value
        return self.END

    def close(self) -> None:
        """Stop the model now (async) or at its next yield (sync). Idempotent."""
        self._finished = True
        self._stopped.set()
        if self._future is not None:
            self._future.cancel()


# ---------------------------------------------------------------------------------------------
# OpenAI shapes: fill what a model may leave empty so every object validates against the spec.


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
    usage = _usage(data.pop("usage", None))
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


def _usage(usage: dict[str, Any] | None) -> dict[str, int] | None:
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
