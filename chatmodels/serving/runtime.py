"""The serving wrapper: `invoke()` and `invoke_stream()` run a version's model in its workers.

A model's code never runs in the gateway: each version is served by model worker processes of
its own (`serving/workers`), started on first use. The gateway sends the parsed chat request,
and checks what comes back before it reaches a client. A request thread waits on this process's
event loop (`eventloop`), where the workers' client runs; a stream is taken from its worker one
chunk at a time, with keep-alives through long silences, and closing it stops the model.
"""

from __future__ import annotations

import collections
import functools
import time
from collections.abc import Callable, Generator
from typing import Any

from django.conf import settings

from chatmodels.models import package_storage
from chatmodels.selectors import ResolvedVersion
from chatmodels.serving import eventloop
from chatmodels.serving.openai_shapes import (
    chunk_dict,
    chunk_of,
    completion_dict,
    completion_id,
    output_dict,
    usage_of,
)
from chatmodels.serving.workers import client
from chatmodels.serving.workers.client import WorkerSpec, WorkerStream
from chatmodels.types import ChatRequest

# What a stream yields when the model has been silent for the keep-alive interval.
KEEP_ALIVE = None


def worker_spec(version: ResolvedVersion, *, served_name: str) -> WorkerSpec:
    """What the workers' supervisor needs to serve `version` (its package is read once per
    digest, off the event loop, when its first worker starts)."""
    return WorkerSpec(
        version_id=version.id,
        digest=version.digest,
        model_name=version.model_name,
        version=version.version,
        served_name=served_name,
        package=functools.partial(_read_package, version.package),
        concurrency=version.max_concurrency or 0,
        replicas=version.worker_replicas,
        memory_limit_mb=version.worker_memory_mb,
    )


def _read_package(name: str) -> bytes:
    with package_storage().open(name, "rb") as package_file:
        return package_file.read()


def stop_workers() -> None:
    """Stop every model worker of this process (tests, and operators reclaiming memory); the
    next request starts its version's workers again."""
    client.shutdown()


def invoke(version: ResolvedVersion, request: ChatRequest, *, served_name: str) -> dict[str, Any]:
    """Run `predict` in the version's worker and return an OpenAI `chat.completion` dict (502 on
    invalid output, 504 after CHATMODELS_MODEL_TIMEOUT)."""
    spec = worker_spec(version, served_name=served_name)
    predicted = client.predict(spec, request.to_dict(), timeout=settings.CHATMODELS_MODEL_TIMEOUT)
    return completion_dict(eventloop.run(predicted), served_name=served_name)


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
    raises from the iterator. Closing the iterator stops the model in its worker.
    """
    spec = worker_spec(version, served_name=served_name)
    stream = client.stream(
        spec,
        request.to_dict(),
        timeout=settings.CHATMODELS_MODEL_TIMEOUT,
        keepalive=settings.CHATMODELS_STREAM_KEEPALIVE,
    )
    feed = _Feed(stream)
    try:
        first = feed.next()
    except BaseException:
        feed.close()
        raise
    chunks = _chunks(
        feed, first, served_name=served_name, include_usage=include_usage, on_usage=on_usage
    )
    return ChunkStream(chunks, feed)


class _Feed:
    """A worker's stream, taken from a request thread a burst at a time (one hand-off to the
    event loop for every chunk that has arrived, not one per chunk)."""

    END = object()

    def __init__(self, stream: WorkerStream) -> None:
        self._stream = stream
        self._taken: collections.deque[Any] = collections.deque()
        self._closed = False

    @property
    def streams(self) -> bool:
        """Whether the model has `predict_stream` (else its one item is a whole answer)."""
        return bool(self._stream.streams)

    def next(self) -> Any:
        """The next checked dict, KEEP_ALIVE after a silence, or END."""
        if not self._taken and not self._closed:
            batch = eventloop.run(self._stream.next_batch())
            if not batch:
                self._closed = True
            self._taken.extend(batch)
        return self._taken.popleft() if self._taken else self.END

    def close(self) -> None:
        """Stop the model (without waiting for its worker). Idempotent."""
        if not self._closed:
            self._closed = True
            self._taken.clear()
            eventloop.submit(self._stream.aclose())


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
        value = first
        while value is not _Feed.END:
            if value is KEEP_ALIVE:
                yield KEEP_ALIVE
            else:
                data = value if feed.streams else _whole_answer(value, served_name=served_name)
                chunk_usage = data.pop("usage", None)
                usage = chunk_usage or usage
                # Usage goes in the last chunk only (when asked for): a chunk that carried
                # nothing else, like an upstream's own usage chunk, is not passed on.
                if data["choices"] or not (include_usage or chunk_usage is not None):
                    yield chunk_dict(data, stream_id=stream_id, created=created, model=served_name)
            value = feed.next()
    finally:
        feed.close()
    reported = usage_of(usage)
    if on_usage is not None:
        on_usage(reported)
    if include_usage:
        # `usage: null` when the model reported none: counts are never made up (the spec allows
        # null; a client then knows the server has no count, rather than reading zero tokens).
        final: dict[str, Any] = {"choices": [], "usage": reported}
        yield chunk_dict(final, stream_id=stream_id, created=created, model=served_name)


def _whole_answer(completion: dict[str, Any], *, served_name: str) -> dict[str, Any]:
    """A model without `predict_stream`: its one answer as one chunk."""
    return output_dict(chunk_of(completion_dict(completion, served_name=served_name)))
