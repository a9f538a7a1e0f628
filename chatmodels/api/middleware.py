"""Request logs (one JSON line per request), and the session middleware API calls skip.

Structured request logs: one JSON line per request with method, path, status and duration.

Each request gets an id, taken from a well-formed `X-Request-ID` sent by a proxy or load balancer
or made here; it is logged and returned in the response's `X-Request-ID` header, so one call can
be followed from the load balancer to the worker that served it.
"""

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions

from chatmodels.api import routes

logger = logging.getLogger("chatmodels.requests")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()
        request.request_id = request_id
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    # For a stream, the time to the first byte; the body follows.
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        return response


# --- Session-only middleware ------------------------------------------------------------------
# Sessions, users and messages serve the routes that sign people in: the admin, and API views
# that accept a staff session besides keys. Everything else (API calls carry a key, never a
# cookie; the API docs; health checks; the landing page) skips them: they cost about a tenth of
# an invocation. Which routes need them is asked of the route Django resolved
# (`routes.uses_sessions`), so their request half runs in `process_view`, the first hook that
# knows the route (Django resolves each request once, after the middleware's `process_request`
# and before `process_view`); their response half runs only when the request half did.
# Subclasses, so Django's admin checks still find them.


class _OnlyWhereSessionsAreUsed:
    # What the Django middleware each subclass also derives from provides.
    async_mode: bool
    get_response: Callable[[Any], Any]
    process_request: Callable[[Any], Any]

    def __call__(self, request):
        if self.async_mode:
            return self._admin_only_acall(request)
        response = self.get_response(request)
        if self._ran_for(request) and hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response

    async def _admin_only_acall(self, request):
        response = await self.get_response(request)
        if self._ran_for(request) and hasattr(self, "process_response"):
            response = await sync_to_async(self.process_response, thread_sensitive=True)(
                request, response
            )
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not routes.uses_sessions(request.resolver_match):
            return None
        request.__dict__.setdefault("_session_middleware_ran", set()).add(type(self))
        return self.process_request(request)

    def _ran_for(self, request) -> bool:
        return type(self) in request.__dict__.get("_session_middleware_ran", ())


class SessionMiddleware(_OnlyWhereSessionsAreUsed, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(_OnlyWhereSessionsAreUsed, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(_OnlyWhereSessionsAreUsed, messages.MessageMiddleware):
    pass
