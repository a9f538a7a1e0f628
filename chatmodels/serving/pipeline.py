"""The one chat pipeline: resolve → check the key and its limits → parse → admit → invoke → answer.

`/api/models/<name>/invocations`, `/v1/chat/completions`, `/v1/responses` and the admin
playground all answer through `answer_chat`, so they resolve, check, stream and fail alike. A
`ChatDialect` is what differs between them: how the request is read and the answer written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from rest_framework.request import Request

from chatmodels import limits, selectors
from chatmodels.exceptions import (
    AliasNotFound,
    ChatDataError,
    ChatModelsError,
    EmptyArray,
    InvalidModelOutput,
    InvalidRequest,
    LimitsUnavailable,
    MissingParameter,
    ModelLoadError,
    ModelNotFound,
    ModelRaised,
    ModelTimeout,
    ModelUnavailable,
    QuotaExhausted,
    RateLimited,
    RequestTooLarge,
    ServerBusy,
    UpstreamFailed,
    VersionNotFound,
)
from chatmodels.selectors import ApiKeyInfo
from chatmodels.serving import capacity, lookups, observability, runtime, shutdown, strict_json
from chatmodels.serving.dialects import agents as agent_dialects
from chatmodels.serving.dialects.base import ChatDialect
from chatmodels.serving.dialects.chat_completions import CHAT_COMPLETIONS

logger = logging.getLogger(__name__)


def read_json_object(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, whatever the Content-Type; 413 past the size limit.

    A `Transfer-Encoding: chunked` body has no Content-Length, so a WSGI request's stream reads
    it as empty: it is read from the server's input stream directly, under the same limit (an
    ASGI request has the whole body already).
    """
    limit = settings.CHATMODELS_MAX_REQUEST_BYTES
    meta = request.META
    declared = meta.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunked = "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not declared and chunked and "wsgi.input" in meta:
        raw = meta["wsgi.input"].read(limit + 1)
    else:
        raw = request.read(limit + 1)
    if len(raw) > limit:
        raise RequestTooLarge(f"request body is over the limit of {limit} bytes")
    body = strict_json.loads_request(raw)  # NaN, Infinity, lone surrogates: 400 naming the field
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"the request body must be a JSON object, got {type(body).__name__}", param=None
        )
    return body


# What finding a model by name (or `name/VERSION`, `name@ALIAS`) and checking the key may raise.
LOOKUP_ERRORS = (InvalidRequest, ModelNotFound, VersionNotFound, AliasNotFound)


def check_model_allowed(key: ApiKeyInfo | None, name: str) -> None:
    """404, as for a model that does not exist, unless `key` may call the model `name` (no key:
    anonymous access or staff, allowed). Checked before its versions and aliases are looked up,
    so a scoped key learns nothing of the models it may not call."""
    if key is not None and not selectors.key_allows_model_named(key, name):
        raise selectors.model_not_found(name)


def _admit(key: ApiKeyInfo, reserve: int) -> limits.Reservation | None:
    return limits.check(key, reserve=reserve)


# Everything `read_json_object` and `answer_chat` can raise: the chat views declare these.
CHAT_ERRORS = (
    *LOOKUP_ERRORS,
    ChatDataError,
    MissingParameter,
    EmptyArray,
    RequestTooLarge,
    ModelRaised,
    ModelLoadError,
    InvalidModelOutput,
    ServerBusy,
    ModelTimeout,
    RateLimited,
    QuotaExhausted,
    UpstreamFailed,
    LimitsUnavailable,
)


async def answer_chat(
    body: dict[str, Any],
    *,
    request: HttpRequest | Request,
    key: ApiKeyInfo | None,
    name: str,
    version: int | None,
    alias: str | None,
    served_name: str | None = None,
    dialect: ChatDialect = CHAT_COMPLETIONS,
) -> HttpResponseBase:
    """Resolve the version, check, invoke, answer: a coroutine, which holds no thread while
    the model runs or the client reads.

    `served_name` is the model name the answer carries (default: `name/N` of the version).
    `dialect` reads the request and writes the answer (default: chat completions).
    `request` is the HTTP request: its route names the metrics, its `traceparent` the span.
    Every outcome, error or answer, is reported once through `observability.ChatCall`.
    """
    call = observability.ChatCall(request=request, key=key, model=served_name or name, body=body)
    try:
        if key is not None and not await lookups.key_allows_model_named(key, name):
            raise selectors.model_not_found(name)
        resolved = await lookups.resolve_version(name=name, version=version, alias=alias)
        call.resolved(resolved)
        served_name = served_name or str(resolved)
        # A ResponsesAgent or ChatAgent reads and answers each route through a translation.
        dialect = agent_dialects.for_interface(resolved.interface, dialect, model=served_name)
        parsed = dialect.parse(body)
        chat_request = parsed.request
        if limits.has_limits(key):
            assert key is not None  # has_limits says so
            reserve = limits.reservation_for(chat_request) if limits.counts_tokens(key) else 0
            call.reservation = await lookups.in_thread(_admit, key, reserve)
        slot = await capacity.acquire(
            model_id=resolved.model_id,
            model_name=name,
            max_concurrency=resolved.max_concurrency,
        )
        if not chat_request.stream:
            try:
                completion = await runtime.invoke(resolved, chat_request, served_name=served_name)
            finally:
                slot.release()
            # Strict JSON, or a 502 naming what the model got wrong.
            answer = strict_json.dumps_model_output(dialect.completion(completion))
            call.set_usage(runtime.answer_usage(resolved, completion))
            await call.afinish()
            return HttpResponse(answer, content_type="application/json")
        try:
            chunks = await runtime.invoke_stream(
                resolved,
                chat_request,
                served_name=served_name,
                include_usage=parsed.include_usage,
                on_usage=call.set_usage,
            )
        except BaseException:
            slot.release()
            raise
    except BaseException as error:
        await call.afinish(error=error)
        raise
    events = _server_sent_events(chunks, slot, call, dialect)
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not buffer the stream
    return response


async def _server_sent_events(
    chunks: runtime.ChunkStream | runtime.AgentStream,
    slot: capacity.Slot,
    call: observability.ChatCall,
    dialect: ChatDialect,
) -> AsyncIterator[bytes]:
    """The SSE body of a stream: the events of each burst of chunks in one write, a keep-alive
    comment through silences. The model is stopped and its slot freed before the last events,
    so a client that has read to the end of a stream finds the capacity free again; a client
    that goes away (the server cancels or closes this) stops the model too."""
    failure: ChatModelsError | None = None
    cut = False
    task = shutdown.streaming()
    try:
        opening = b"".join(dialect.begin())
        if opening:
            yield opening
        async for batch in chunks.batches():
            if call.first_chunk_at is None and any(c is not runtime.KEEP_ALIVE for c in batch):
                call.first_chunk()  # time to first token
            yield b"".join([event for chunk in batch for event in dialect.event(chunk)])
    except asyncio.CancelledError:
        if not shutdown.being_cut(task):
            call.finish(client_closed=True)
            raise
        # The server is stopping and its graceful timeout nearly over: end the stream here.
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+: its later awaits go on
        if uncancel is not None:
            uncancel()
        cut = True
        failure = ModelUnavailable(
            "the server is shutting down: this stream was cut at the end of its graceful"
            " timeout; retry the request"
        )
    except GeneratorExit:
        call.finish(client_closed=True)
        raise
    except ChatModelsError as error:
        # The status line has gone out: the error is the last event, and one line in the log.
        logger.warning("stream ended with an error: %s", error.message)
        failure = error
    except Exception:
        logger.exception("stream failed")
        failure = ChatModelsError("the stream failed; see the server log")
    finally:
        shutdown.done(task)
        slot.release()
        await chunks.aclose()
    if failure is not None:
        await call.afinish(error=failure)
        yield b"".join(dialect.cut(failure) if cut else dialect.failed(failure))
        return
    await call.afinish()
    yield b"".join(dialect.end())
