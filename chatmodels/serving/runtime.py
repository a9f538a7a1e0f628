"""The serving wrapper: `invoke()` and `invoke_stream()` run a loaded version's model.

Sync models run on the request thread; async ones on the process's event loop (`eventloop`).
A stream is produced apart from the request thread (a task on the loop, or a thread of its own
for a sync generator) into a queue, so that the request thread can send keep-alives through a
long silence, give up on a stuck model, and stop the model the moment the client goes away.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from django.conf import settings

from chatmodels import packaging
from chatmodels.exceptions import ModelRaised, ModelTimeout
from chatmodels.selectors import ResolvedVersion
from chatmodels.serving import eventloop
from chatmodels.serving.model_cache import get_loaded_model
from chatmodels.serving.openai_shapes import (
    chunk_dict,
    chunk_of,
    completion_dict,
    completion_id,
    output_dict,
    usage_of,
)
from chatmodels.types import ChatChunk, ChatRequest

logger = logging.getLogger(__name__)

# What a stream yields when the model has been silent for the keep-alive interval.
KEEP_ALIVE = None


# ---------------------------------------------------------------------------------------------
# Invocation


def invoke(version: ResolvedVersion, request: ChatRequest, *, served_name: str) -> dict[str, Any]:
    """Run `predict` and return an OpenAI `chat.completion` dict (502 on invalid output)."""
    loaded = get_loaded_model(version)
    messages, params = request.split()
    value = _predict(loaded, messages, params, served_name=served_name)
    response = packaging.check_response(value)
    return completion_dict(output_dict(response), served_name=served_name)


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
) -> ChunkStream:
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
    return ChunkStream(chunks, feed)


class ChunkStream:
    """The chunks, as an iterator whose `close()` stops the model even if no chunk was taken
    yet (closing a generator that never started runs none of its `finally`)."""

    def __init__(self, chunks: Generator[dict[str, Any] | None, None, None], feed: _Feed) -> None:
        self._chunks = chunks
        self._feed = feed

    def __iter__(self) -> ChunkStream:
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
) -> Generator[dict[str, Any] | None, None, None]:
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
    reported = usage_of(usage.to_dict() if usage else None)
    if on_usage is not None:
        on_usage(reported)
    if include_usage:
        # `usage: null` when the model reported none: counts are never made up (the spec allows
        # null; a client then knows the server has no count, rather than reading zero tokens).
        final: dict[str, Any] = {"choices": [], "usage": reported}
        yield chunk_dict(final, stream_id=stream_id, created=created, model=served_name)


def _as_chunk(value: Any, *, loaded_streams: bool, served_name: str) -> ChatChunk:
    if loaded_streams:
        return packaging.check_chunk(value)
    response = packaging.check_response(value)
    return chunk_of(completion_dict(output_dict(response), served_name=served_name))


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
        predict_stream = loaded.predict_stream  # None when the model does not stream
        try:
            if predict_stream is not None:
                generator = predict_stream(messages, params)
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
        predict_stream = loaded.predict_stream  # None when the model does not stream
        try:
            if predict_stream is None:
                put((self._VALUE, loaded.predict(messages, params)))
            else:
                generator = iter(predict_stream(messages, params))
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
