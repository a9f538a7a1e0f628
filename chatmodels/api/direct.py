"""The chat routes answered without Django's request cycle: the server's hot path.

`POST /v1/chat/completions`, `/v1/responses` and `/api/models/<name>/invocations` are nearly all
of a gateway's traffic, and around them Django's handler, its middleware chain, URL resolution
and DRF's dispatch cost about as much CPU as the chat pipeline itself. Here they are answered by
the functions the DRF views call (`views.answer_*`), with what that cycle does for them done
directly, in the same order and with the same outcome:

- the stock middleware's checks (SecurityMiddleware's HTTPS redirect, CommonMiddleware's
  allowed hosts and user agents): a request either would stop is passed to Django, which answers
  it as it always does;
- the API key, as DRF's `ApiKeyAuthentication` and `HasApiKey` check it (401 with
  `WWW-Authenticate`), then the body, then the view's function;
- errors as the API's exception handler writes them (a bug is logged and answered 500);
- the headers DRF and the middleware add (Allow, X-Frame-Options, X-Content-Type-Options,
  Referrer-Policy, Cross-Origin-Opener-Policy, Content-Length, X-Request-ID), the request's log
  line, and the database connections of a request that ran synchronous code closed at its end;
- a client that goes away stops the request (its model call is cancelled, its slot freed).

Anything out of the ordinary takes Django's whole way, so nothing is answered differently: another
method or path, a global request rate (CHATMODELS_THROTTLE_RATE, DRF's throttle), middleware other
than the stock list, a script prefix.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from io import BytesIO
from typing import Any, NamedTuple

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware import clickjacking, common, security
from django.urls import ResolverMatch
from django.utils.log import log_response
from rest_framework import exceptions as drf

from chatmodels import exceptions as domain
from chatmodels.api import auth, errors, middleware, sending, views
from chatmodels.selectors import ApiKeyInfo
from chatmodels.serving import lookups
from chatmodels.serving.pipeline import read_json_object

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Answer = Callable[[HttpRequest, ApiKeyInfo | None, dict[str, Any]], Awaitable[HttpResponseBase]]

# settings.MIDDLEWARE as the project ships it: what this module does in its place.
STOCK_MIDDLEWARE = (
    "chatmodels.api.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "chatmodels.api.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "chatmodels.api.middleware.AuthenticationMiddleware",
    "chatmodels.api.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
ALLOW = "POST, OPTIONS"  # what DRF's views say they allow on these routes
_INVOCATIONS = re.compile(r"/api/models/([^/]+)/invocations\Z")


class Route(NamedTuple):
    url_name: str  # as in urls.py: metrics and traces name the route by it
    kwargs: dict[str, str]
    answer: Answer


def _no_view(*args: Any, **kwargs: Any) -> None:
    """The view of a direct route's ResolverMatch (it is answered here, not by a view)."""


def route(scope: MutableMapping[str, Any]) -> Route | None:
    """The direct route of a request, or None: Django answers it."""
    if scope["method"] != "POST" or scope.get("root_path") or settings.FORCE_SCRIPT_NAME:
        return None
    if settings.CHATMODELS_THROTTLE_RATE or tuple(settings.MIDDLEWARE) != STOCK_MIDDLEWARE:
        return None
    path = scope["path"]
    if path == "/v1/chat/completions":
        return Route("chat-completions", {}, views.answer_chat_completions)
    if path == "/v1/responses":
        return Route("responses", {}, views.answer_responses)
    match = _INVOCATIONS.fullmatch(path)
    if match is not None:
        name = match.group(1)

        async def invocations(
            request: HttpRequest, key: ApiKeyInfo | None, body: dict[str, Any]
        ) -> HttpResponseBase:
            return await views.answer_invocations(request, key, name, body)

        return Route("model-invocations", {"name": name}, invocations)
    return None


def _nothing(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("only the middleware's hooks are called")


# The stock middleware whose checks and headers apply to these routes (the others do nothing on
# them: sessions, users and messages are skipped on API routes, DRF's views are exempt from
# CSRF, WhiteNoise serves only static files).
_security = security.SecurityMiddleware(_nothing)
_common = common.CommonMiddleware(_nothing)
_frame_options = clickjacking.XFrameOptionsMiddleware(_nothing)


async def answer(
    chat_route: Route, scope: MutableMapping[str, Any], body: bytes, receive: Receive, send: Send
) -> bool:
    """Answer the request on `chat_route`; False when Django must (nothing was sent)."""
    try:
        request = ASGIRequest(scope, BytesIO(body))
        if _security.process_request(request) or _common.process_request(request):
            return False  # a redirect or a refusal: Django's, as ever
    except Exception:  # a bad Host or header: Django answers it
        return False
    started = time.perf_counter()
    request_id = middleware.take_request_id(request)
    request.resolver_match = ResolverMatch(
        _no_view, (), chat_route.kwargs, url_name=chat_route.url_name
    )
    async with ThreadSensitiveContext() as context:
        responding = asyncio.create_task(
            _respond(chat_route, request, request_id, started, send, context)
        )
        listening = asyncio.create_task(_client_gone(receive))
        try:
            await asyncio.wait((responding, listening), return_when=asyncio.FIRST_COMPLETED)
        finally:
            responding.cancel()  # the client went away (or the server is stopping)
            listening.cancel()
            outcome, _ = await asyncio.gather(responding, listening, return_exceptions=True)
    if isinstance(outcome, Exception):
        raise outcome  # ClientStalled: the server logs it
    return True


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _respond(
    chat_route: Route,
    request: HttpRequest,
    request_id: str,
    started: float,
    send: Send,
    context: ThreadSensitiveContext,
) -> None:
    response: Any  # Django's stubs type the middleware hooks for HttpResponse only
    try:
        key = await _authenticate(request)
        response = await chat_route.answer(request, key, read_json_object(request))
    except Exception as error:
        response = _error_response(error, request)
    response["Allow"] = ALLOW
    _frame_options.process_response(request, response)
    _common.process_response(request, response)
    _security.process_response(request, response)
    middleware.log_request(request, response, request_id, started)
    if response.status_code >= 400:
        log_response(
            "%s: %s", response.reason_phrase, request.path, response=response, request=request
        )
    try:
        await sending.send_response(response, send)
    finally:
        await sending.close_stream(response)
        await sending.close_response(response, context, signal_on_the_loop=False)


async def _authenticate(request: HttpRequest) -> ApiKeyInfo | None:
    """The request's API key, as DRF's authentication and permission check it."""
    try:
        raw_key = auth.bearer_key(request.META.get("HTTP_AUTHORIZATION", ""))
    except drf.AuthenticationFailed as failed:
        raise _Unauthenticated(str(failed.detail)) from None
    if raw_key is None:
        if settings.CHATMODELS_ALLOW_ANONYMOUS:
            return None
        raise _Unauthenticated(auth.NO_KEY)
    key = await lookups.api_key_async(raw_key)
    if key is None:
        raise _Unauthenticated(auth.INVALID_KEY)
    return key


class _Unauthenticated(domain.Unauthenticated):
    """401, with the `WWW-Authenticate` header DRF's views send with it."""

    @property
    def headers(self) -> dict[str, str]:
        return {**super().headers, "WWW-Authenticate": auth.WWW_AUTHENTICATE}


def _error_response(error: Exception, request: HttpRequest) -> HttpResponseBase:
    response = errors.exception_handler(error, {})
    if response is not None:
        return response
    # A bug: logged with its traceback, answered as Django's handler500 answers it.
    response = errors.server_error(request)
    log_response(
        "Internal Server Error: %s",
        request.path,
        response=response,
        request=request,
        exception=error,
    )
    return response
