"""The serving wrapper: `invoke()` and `invoke_stream()` run a version's model in its workers.

A model's code never runs in the gateway: each version is served by model worker processes of
its own (`serving/workers`), started on first use. The gateway sends the parsed chat request,
and checks what comes back before it reaches a client. Requests await the workers' client on
this process's event loop (`eventloop`); a stream is taken from its worker a burst of chunks at
a time, with keep-alives through long silences, and closing it stops the model.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.conf import settings

from chatmodels.agents import translate
from chatmodels.interfaces import CHAT_MODEL, AgentRequest
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


async def invoke(
    version: ResolvedVersion, request: ChatRequest | AgentRequest, *, served_name: str
) -> dict[str, Any]:
    """Run `predict` in the version's worker and return an OpenAI `chat.completion` dict (502 on
    invalid output, 504 after CHATMODELS_MODEL_TIMEOUT); for an agent, its checked answer
    (a ResponsesAgentResponse or ChatAgentResponse dict)."""
    spec = worker_spec(version, served_name=served_name)
    predicted = client.predict(spec, request.to_dict(), timeout=settings.CHATMODELS_MODEL_TIMEOUT)
    answer = await eventloop.call(predicted)
    if version.interface != CHAT_MODEL:
        return answer  # an agent's checked answer, in its own format: the dialect writes it
    return completion_dict(answer, served_name=served_name)


def answer_usage(version: ResolvedVersion, answer: dict[str, Any]) -> dict[str, Any] | None:
    """The usage `invoke`'s answer reports, in chat's shape (None: none reported)."""
    if version.interface == CHAT_MODEL:
        return answer.get("usage")
    return usage_of(translate.answer_usage(version.interface, answer))


async def invoke_stream(
    version: ResolvedVersion,
    request: ChatRequest | AgentRequest,
    *,
    served_name: str,
    include_usage: bool = False,
    on_usage: Callable[[dict[str, Any] | None], None] | None = None,
) -> ChunkStream | AgentStream:
    """A stream of OpenAI `chat.completion.chunk` dicts, from `predict_stream` or from one
    `predict` answer: see ChunkStream. For an agent, its checked stream items, in its own
    format: see AgentStream.

    The first chunk is awaited (for up to one keep-alive interval) before this returns, so a
    model that fails at once is answered with an ordinary error response; a later failure
    raises from `batches()`. Closing the stream stops the model in its worker.
    """
    spec = worker_spec(version, served_name=served_name)
    stream = client.stream(
        spec,
        request.to_dict(),
        timeout=settings.CHATMODELS_MODEL_TIMEOUT,
        keepalive=settings.CHATMODELS_STREAM_KEEPALIVE,
    )
    chunks: ChunkStream | AgentStream
    if version.interface != CHAT_MODEL:
        chunks = AgentStream(stream, interface=version.interface, on_usage=on_usage)
    else:
        chunks = ChunkStream(
            stream, served_name=served_name, include_usage=include_usage, on_usage=on_usage
        )
    try:
        await chunks.start()
    except BaseException:
        await chunks.aclose()
        raise
    return chunks


class _WorkerBatches:
    """A worker stream taken a burst at a time: the first burst awaited by `start()` (so an
    early failure is an ordinary error), the rest by `_take()`; `aclose()` stops the model."""

    def __init__(self, stream: WorkerStream) -> None:
        self._stream = stream
        self._first: list[Any] = []
        self._closed = False

    async def start(self) -> None:
        self._first = await self._take()

    async def _take(self) -> list[Any]:
        if self._closed:
            return []
        batch = await eventloop.call(self._stream.next_batch())
        if not batch:
            self._closed = True
        return batch

    async def aclose(self) -> None:
        """Stop the model in its worker. Idempotent."""
        if not self._closed:
            self._closed = True
            await eventloop.call(self._stream.aclose())


class ChunkStream(_WorkerBatches):
    """A model's stream, taken from its worker a burst at a time: `batches()` yields lists of
    chunk dicts (KEEP_ALIVE, None, after each keep-alive interval of silence), every chunk that
    has arrived in one list. When the stream has come to its end, `on_usage` is called with
    the usage the model reported (None if it did not), whether or not the client asked for it
    (`include_usage`: then a last chunk carries it). `aclose()` stops the model, even if no
    chunk was taken yet."""

    def __init__(
        self,
        stream: WorkerStream,
        *,
        served_name: str,
        include_usage: bool,
        on_usage: Callable[[dict[str, Any] | None], None] | None,
    ) -> None:
        super().__init__(stream)
        self._served_name = served_name
        self._include_usage = include_usage
        self._on_usage = on_usage
        self._id, self._created = completion_id(), int(time.time())
        self._usage: dict[str, Any] | None = None

    async def batches(self) -> AsyncIterator[list[dict[str, Any] | None]]:
        try:
            batch, self._first = self._first, []
            while batch:
                shaped = [chunk for chunk in map(self._shape, batch) if chunk is not _SKIP]
                if shaped:
                    yield shaped
                batch = await self._take()
        finally:
            await self.aclose()
        reported = usage_of(self._usage)
        if self._on_usage is not None:
            self._on_usage(reported)
        if self._include_usage:
            # `usage: null` when the model reported none: counts are never made up (the spec
            # allows null; a client then knows the server has no count, rather than reading 0).
            final: dict[str, Any] = {"choices": [], "usage": reported}
            yield [self._chunk(final)]

    def _shape(self, value: Any) -> Any:
        if value is KEEP_ALIVE:
            return KEEP_ALIVE
        if self._stream.streams:
            data = value
        else:  # a model without `predict_stream`: its one answer as one chunk
            data = output_dict(chunk_of(completion_dict(value, served_name=self._served_name)))
        chunk_usage = data.pop("usage", None)
        self._usage = chunk_usage or self._usage
        # Usage goes in the last chunk only (when asked for): a chunk that carried nothing
        # else, like an upstream's own usage chunk, is not passed on.
        if data["choices"] or not (self._include_usage or chunk_usage is not None):
            return self._chunk(data)
        return _SKIP

    def _chunk(self, data: dict[str, Any]) -> dict[str, Any]:
        return chunk_dict(data, stream_id=self._id, created=self._created, model=self._served_name)


_SKIP = object()


class AgentStream(_WorkerBatches):
    """An agent's stream, as ChunkStream is a ChatModel's: `batches()` yields lists of its
    checked stream items in its own format (ResponsesAgentStreamEvent or ChatAgentChunk dicts;
    an agent without `predict_stream` gives its one answer as such items), KEEP_ALIVE through
    silences. `on_usage` gets the usage it reported, in chat's shape, at its end."""

    def __init__(
        self,
        stream: WorkerStream,
        *,
        interface: str,
        on_usage: Callable[[dict[str, Any] | None], None] | None,
    ) -> None:
        super().__init__(stream)
        self._interface = interface
        self._on_usage = on_usage
        self._usage = translate.UsageTally(interface)

    async def batches(self) -> AsyncIterator[list[dict[str, Any] | None]]:
        try:
            batch, self._first = self._first, []
            while batch:
                items: list[dict[str, Any] | None] = []
                for value in batch:
                    if value is KEEP_ALIVE:
                        items.append(KEEP_ALIVE)
                        continue
                    for item in (
                        [value]
                        if self._stream.streams
                        else translate.answer_events(self._interface, value)
                    ):
                        self._usage.add(item)
                        items.append(item)
                if items:
                    yield items
                batch = await self._take()
        finally:
            await self.aclose()
        if self._on_usage is not None:
            self._on_usage(usage_of(self._usage.usage))
