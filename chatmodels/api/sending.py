"""Sending a Django response over ASGI, and closing it, for the ASGI handler and the direct
chat routes alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async
from django.http.response import HttpResponseBase

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def close_response(
    response: Any, context: ThreadSensitiveContext, *, signal_on_the_loop: bool = True
) -> None:
    """Close a response (Django's `request_finished`): in the thread the request's synchronous
    code ran in, if it ran any, so that the connection that code used is closed or pooled.

    Without `signal_on_the_loop`, a request that ran no synchronous code sends no
    `request_finished`: its receivers (Django's: close the database connections of the thread
    they run in) have nothing to do on the event loop's thread, which never opens one.
    """
    if ran_synchronous_code(context):
        await sync_to_async(response.close)()
    elif signal_on_the_loop:
        response.close()
    else:
        for closer in response._resource_closers:
            closer()
        response.closed = True


async def close_stream(response: Any) -> None:
    """Close a streamed response's async generator now, however its sending ended (to its end,
    the client gone, the write timeout): a stream's model is stopped and its slot freed at once,
    not when the generator is garbage-collected (Django closes only its own wrapper)."""
    if getattr(response, "is_async", False):
        aclose = getattr(response._iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def ran_synchronous_code(context: ThreadSensitiveContext) -> bool:
    """Whether `sync_to_async` gave this request's context a thread of its own."""
    return context in SyncToAsync.context_to_thread_executor


async def send_response(response: HttpResponseBase, send: Send) -> None:
    """Send a response: its status and headers, then its body, or each part of a stream as it
    comes (Django's `ASGIHandler.send_response`, without splitting parts into 64 KB chunks)."""
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    if not response.streaming:
        await send({"type": "http.response.body", "body": response.content})  # type: ignore[attr-defined]
        return
    async for part in response:  # type: ignore[attr-defined]
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body"})
