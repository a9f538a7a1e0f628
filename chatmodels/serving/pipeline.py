"""The one chat pipeline: resolve → check the key and its limits → parse → admit → invoke → answer.

`/api/models/<name>/invocations`, `/v1/chat/completions`, `/v1/responses` and the admin
playground all answer through `answer_chat`, so they resolve, check, stream and fail alike. A
`ChatDialect` is what differs between them: how the request is read and the answer written.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from rest_framework.request import Request

from chatmodels import limits, selectors
from chatmodels.exceptions import (
    AliasNotFound,
    ChatDataError,
    ChatModelsError,
    InvalidModelOutput,
    InvalidRequest,
    ModelLoadError,
    ModelNotAllowed,
    ModelNotFound,
    ModelRaised,
    ModelTimeout,
    QuotaExhausted,
    RateLimited,
    RequestTooLarge,
    ServerBusy,
    VersionNotFound,
)
from chatmodels.selectors import ApiKeyInfo
from chatmodels.serving import capacity, observability, runtime, strict_json
from chatmodels.serving.dialects.base import ChatDialect
from chatmodels.serving.dialects.chat_completions import CHAT_COMPLETIONS

logger = logging.getLogger(__name__)


def read_json_object(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, whatever the Content-Type; 413 past the size limit.

    A `Transfer-Encoding: chunked` body has no Content-Length, so Django's stream reads it as
    empty: it is read from the server's input stream directly, under the same limit.
    """
    limit = settings.CHATMODELS_MAX_REQUEST_BYTES
    meta = request.META
    declared = meta.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    if not declared and "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
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
LOOKUP_ERRORS = (InvalidRequest, ModelNotAllowed, ModelNotFound, VersionNotFound, AliasNotFound)


def check_model_allowed(key: ApiKeyInfo | None, model_id: int, name: str) -> None:
    """403 unless `key` may call this model (no key: anonymous access or staff, allowed)."""
    if key is not None and not selectors.key_allows(key, model_id):
        raise ModelNotAllowed(f"this API key may not call model '{name}'", param="model")


# Everything `read_json_object` and `answer_chat` can raise: the chat views declare these.
CHAT_ERRORS = (
    *LOOKUP_ERRORS,
    ChatDataError,
    RequestTooLarge,
    ModelRaised,
    ModelLoadError,
    InvalidModelOutput,
    ServerBusy,
    ModelTimeout,
    RateLimited,
    QuotaExhausted,
)


def answer_chat(
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
    """Resolve the version (every request: alias moves are seen at once), check, invoke, answer.

    `served_name` is the model name the answer carries (default: `name/N` of the version).
    `dialect` reads the request and writes the answer (default: chat completions).
    `request` is the HTTP request: its route names the metrics, its `traceparent` the span.
    Every outcome, error or answer, is reported once through `observability.ChatCall`.
    """
    call = observability.ChatCall(request=request, key=key, model=served_name or name, body=body)
    try:
        resolved = selectors.resolve_version(name=name, version=version, alias=alias)
        call.resolved(resolved)
        check_model_allowed(key, resolved.model_id, name)
        if key is not None:
            limits.check(key)
        parsed = dialect.parse(body)
        chat_request = parsed.request
        served_name = served_name or str(resolved)
        _release_pooled_connection()
        slot = capacity.acquire(
            model_id=resolved.model_id,
            model_name=name,
            max_concurrency=resolved.max_concurrency,
        )
        if not chat_request.stream:
            try:
                completion = runtime.invoke(resolved, chat_request, served_name=served_name)
            finally:
                slot.release()
            # Strict JSON, or a 502 naming what the model got wrong.
            answer = strict_json.dumps_model_output(dialect.completion(completion))
            call.set_usage(completion.get("usage"))
            call.finish()
            return HttpResponse(answer, content_type="application/json")
        try:
            chunks = runtime.invoke_stream(
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
        call.finish(error=error)
        raise
    events = _EventStream(chunks, slot, call, dialect)
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not buffer the stream
    return response


def _release_pooled_connection() -> None:
    # A pooled connection goes back to the pool before the model runs, so a slow model holds
    # none; without a pool (SQLite) each thread keeps its own, which costs nothing to hold.
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


class _EventStream:
    """The SSE body of a stream. The server closes it when the client goes away (or when the
    stream ends): that stops the model and gives its slot back, even if it never started."""

    def __init__(
        self,
        chunks: runtime.ChunkStream,
        slot: capacity.Slot,
        call: observability.ChatCall,
        dialect: ChatDialect,
    ) -> None:
        self._chunks = chunks
        self._slot = slot
        self._call = call
        self._events = _server_sent_events(chunks, slot, call, dialect)

    def __iter__(self) -> Iterator[bytes]:
        return self._events

    def close(self) -> None:
        self._events.close()
        self._chunks.close()
        self._slot.release()
        self._call.finish(client_closed=True)  # a no-op when the stream came to its end


def _server_sent_events(
    chunks: runtime.ChunkStream,
    slot: capacity.Slot,
    call: observability.ChatCall,
    dialect: ChatDialect,
) -> Generator[bytes, None, None]:
    """Each event is written as soon as it is yielded; a keep-alive comment through silences.
    The model is stopped and its slot freed before the last events, so a client that has read
    to the end of a stream finds the capacity free again."""
    failure = None
    try:
        yield from dialect.events(_noting_first_chunk(chunks, call))
    except ChatModelsError as error:
        # The status line has gone out: the error is the last event, and one line in the log.
        logger.warning("stream ended with an error: %s", error.message)
        call.finish(error=error)
        failure = error
    except Exception as error:
        logger.exception("stream failed")
        call.finish(error=error)
        failure = ChatModelsError("the stream failed; see the server log")
    finally:
        chunks.close()
        slot.release()
    if failure is not None:
        yield from dialect.failed(failure)
        return
    call.finish()
    yield from dialect.end()


def _noting_first_chunk(
    chunks: Iterator[dict[str, Any] | None], call: observability.ChatCall
) -> Iterator[dict[str, Any] | None]:
    for chunk in chunks:
        if chunk is not runtime.KEEP_ALIVE:
            call.first_chunk()  # time to first token
        yield chunk
