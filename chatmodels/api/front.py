"""The ASGI application the server runs: Django's, behind what bounds the time a client may take.

- The request body is read here, before Django sees the request: at most
  CHATMODELS_MAX_REQUEST_BYTES (else 413) within CHATMODELS_BODY_TIMEOUT seconds of the headers
  (else 408; a client sending one byte every few seconds is cut off, not waited for).
- Each write to a client must complete within CHATMODELS_WRITE_TIMEOUT seconds: a client that
  stops reading a stream has it ended (the server closes the connection; the model is stopped
  and its slot freed, as when a client goes away).
- The first request makes the server's event loop this process's loop (`eventloop.adopt`), so
  chat requests await their model workers on it directly.

Headers and idle connections are bounded by the server itself (scripts/server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import asgi
from django.core.handlers.asgi import get_script_prefix
from django.urls import set_script_prefix

from chatmodels.api import direct, middleware, sending
from chatmodels.exceptions import ChatModelsError, RequestTimeout, RequestTooLarge
from chatmodels.serving import eventloop, shutdown, strict_json
from chatmodels.serving.errors import error_body

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


_timeout_scope = getattr(asyncio, "timeout", None)


class ASGIHandler(asgi.ASGIHandler):
    """Django's ASGI handler, without a thread for a request that runs no synchronous code.

    Django's own sends `request_started` and closes the response (`request_finished`) through
    `sync_to_async`: a thread started, used and joined for every request, the costliest part of
    an async chat request. Their receivers (closing the database connections of the thread that
    runs them) have nothing to do on the event loop's thread, which never opens one, so here they
    run on the loop, unless the request ran synchronous code (a sync view, a lookup that asked the
    database): then it closes in that code's thread, as Django does, so that its connection goes
    back to the pool.

    The middleware whose hooks need no thread run on the loop too (`middleware.ON_THE_LOOP`:
    their subclasses are loaded in place of the classes settings.MIDDLEWARE names).
    """

    def load_middleware(self, is_async: bool = False) -> None:
        named = settings.MIDDLEWARE
        settings.MIDDLEWARE = [middleware.ON_THE_LOOP.get(path, path) for path in named]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = named

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with ThreadSensitiveContext() as context:
            await self._handle(scope, receive, send, context)

    async def _handle(
        self, scope: Any, receive: Any, send: Any, context: ThreadSensitiveContext
    ) -> None:
        # Django's ASGIHandler.handle (5.2), but for the signals and the close.
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None
            body_file.close()
            await self.send_response(error_response, send)
            await sending.close_response(error_response, context)
            return

        async def process_request() -> Any:
            response = await self.run_get_response(request)
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    await self.send_response(response, send)
            finally:
                await sending.close_stream(response)
            return response

        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                with contextlib.suppress(RequestAborted):
                    task.result()
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await self._finished(context)
        else:
            await sending.close_response(response, context)
        body_file.close()

    async def _finished(self, context: ThreadSensitiveContext) -> None:
        if sending.ran_synchronous_code(context):
            await signals.request_finished.asend(sender=self.__class__)
        else:
            signals.request_finished.send(sender=self.__class__)


class ClientStalled(RequestAborted):
    """A write to the client did not complete within CHATMODELS_WRITE_TIMEOUT."""


class Front:
    """Wraps the Django ASGI application (see the module); the chat routes are answered
    without it (`direct`) unless something out of the ordinary asks for Django's whole way."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        eventloop.adopt(asyncio.get_running_loop())
        if scope["type"] != "http":
            return  # websockets are off (scripts/server); nothing else is spoken
        try:
            body = await _read_body(scope, receive)
        except ChatModelsError as error:
            await _send_error(send, error)
            return
        except RequestAborted:
            return  # the client went away while sending
        try:
            chat_route = direct.route(scope)
            if chat_route is not None and await direct.answer(
                chat_route, scope, body, receive, _bounded(send)
            ):
                return
            await self.app(scope, _replay(body, receive), _bounded(send))
        except ClientStalled as stalled:
            logger.info("%s %s: %s", scope.get("method"), scope.get("path"), stalled)


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    limit = settings.CHATMODELS_MAX_REQUEST_BYTES
    timeout = settings.CHATMODELS_BODY_TIMEOUT or None
    declared = _content_length(scope)
    if declared is not None and declared > limit:
        raise RequestTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    parts: list[bytes] = []

    async def read() -> None:
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            part = message.get("body", b"")
            if part:
                size += len(part)
                if size > limit:
                    raise RequestTooLarge(f"request body is over the limit of {limit} bytes")
                parts.append(part)
            if not message.get("more_body", False):
                return

    try:
        if _timeout_scope is None:  # Python 3.10
            await asyncio.wait_for(read(), timeout)
        else:  # a timer, not a task per request
            async with _timeout_scope(timeout):
                await read()
    except asyncio.TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout:g} s (CHATMODELS_BODY_TIMEOUT);"
            f" {sum(map(len, parts))} bytes came",
            param=None,
        ) from None
    return b"".join(parts)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body as one message, then the client's own messages (Django listens for its
    disconnect while it answers)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _bounded(send: Send) -> Send:
    timeout = settings.CHATMODELS_WRITE_TIMEOUT or None
    if timeout is None:
        return send

    async def bounded(message: Message) -> None:
        try:
            if _timeout_scope is None:  # Python 3.10
                await asyncio.wait_for(send(message), timeout)
            else:  # a timer, not a task per write
                async with _timeout_scope(timeout):
                    await send(message)
        except asyncio.TimeoutError:
            raise ClientStalled(
                f"the client read nothing for {timeout:g} s (CHATMODELS_WRITE_TIMEOUT):"
                " the response was cut off"
            ) from None

    return bounded


async def _send_error(send: Send, error: ChatModelsError) -> None:
    body = strict_json.dumps_json_text(error_body(error)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            eventloop.adopt(asyncio.get_running_loop())
            shutdown.install(asyncio.get_running_loop())  # streams cut cleanly at SIGTERM
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
