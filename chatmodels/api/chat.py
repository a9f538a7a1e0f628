"""The one chat pipeline: resolve → check the key and its limits → parse → admit → invoke → answer.

`/api/models/<name>/invocations`, `/v1/chat/completions` and the admin playground all answer
through `answer_chat`, so they resolve, check, stream and fail alike.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from rest_framework.request import Request

from chatmodels import capacity, limits, runtime, selectors
from chatmodels.api import errors, observability
from chatmodels.exceptions import (
    ChatModelsError,
    InvalidRequest,
    ModelNotAllowed,
    RequestTooLarge,
)
from chatmodels.selectors import ApiKeyInfo
from chatmodels.types import ChatRequest

logger = logging.getLogger(__name__)

KEEP_ALIVE_EVENT = b": keep-alive\n\n"


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
    try:
        body = json.loads(raw)
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply") from None
    except ValueError as error:
        raise InvalidRequest(f"the request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"the request body must be a JSON object, got {type(body).__name__}", param=None
        )
    return body


def check_model_allowed(key: ApiKeyInfo | None, model_id: int, name: str) -> None:
    """403 unless `key` may call this model (no key: anonymous access or staff, allowed)."""
    if key is not None and not selectors.key_allows(key, model_id):
        raise ModelNotAllowed(f"this API key may not call model '{name}'", param="model")


def answer_chat(
    body: dict[str, Any],
    *,
    request: HttpRequest | Request,
    key: ApiKeyInfo | None,
    name: str,
    version: int | None,
    alias: str | None,
    served_name: str | None = None,
) -> HttpResponse:
    """Resolve the version (every request: alias moves are seen at once), check, invoke, answer.

    `served_name` is the model name the answer carries (default: `name/N` of the version).
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
        chat_request = ChatRequest.from_dict(body)
        include_usage = _include_usage(body) if chat_request.stream else False
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
            call.set_usage(completion.get("usage"))
            call.finish()
            return HttpResponse(json.dumps(completion), content_type="application/json")
        try:
            chunks = runtime.invoke_stream(
                resolved,
                chat_request,
                served_name=served_name,
                include_usage=include_usage,
                on_usage=call.set_usage,
            )
        except BaseException:
            slot.release()
            raise
    except BaseException as error:
        call.finish(error=error)
        raise
    response = StreamingHttpResponse(
        _EventStream(chunks, slot, call), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not buffer the stream
    return response


def _release_pooled_connection() -> None:
    # A pooled connection goes back to the pool before the model runs, so a slow model holds
    # none; without a pool (SQLite) each thread keeps its own, which costs nothing to hold.
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("stream_options: expected an object", param="stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise InvalidRequest(
            "stream_options.include_usage: expected a boolean", param="stream_options.include_usage"
        )
    return include


class _EventStream:
    """The SSE body of a stream. The server closes it when the client goes away (or when the
    stream ends): that stops the model and gives its slot back, even if it never started."""

    def __init__(
        self,
        chunks: Iterator[dict[str, Any] | None],
        slot: capacity.Slot,
        call: observability.ChatCall,
    ) -> None:
        self._chunks = chunks
        self._slot = slot
        self._call = call
        self._events = _server_sent_events(chunks, slot, call)

    def __iter__(self) -> Iterator[bytes]:
        return self._events

    def close(self) -> None:
        self._events.close()
        self._chunks.close()
        self._slot.release()
        self._call.finish(client_closed=True)  # a no-op when the stream came to its end


def _server_sent_events(
    chunks: Iterator[dict[str, Any] | None], slot: capacity.Slot, call: observability.ChatCall
):
    """Each event is written as soon as it is yielded; a keep-alive comment through silences."""
    try:
        for chunk in chunks:
            if chunk is runtime.KEEP_ALIVE:
                yield KEEP_ALIVE_EVENT
            else:
                call.first_chunk()
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
    except ChatModelsError as error:
        call.finish(error=error)
        body = errors.error_body(error.message, errors.domain_error_kind(error), error.param)
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
        return
    except Exception as error:
        logger.exception("stream failed")
        call.finish(error=error)
        body = errors.error_body("the stream failed; see the server log", errors.SERVER_ERROR)
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
        return
    finally:
        chunks.close()
        slot.release()
    call.finish()
    yield b"data: [DONE]\n\n"
