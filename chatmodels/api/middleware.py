"""Request logs (one JSON line per request), and the browser-only middleware API calls skip.

Structured request logs: one JSON line per request with method, path, status and duration.

Each request gets an id, taken from a well-formed `X-Request-ID` sent by a proxy or load balancer
or made here; it is logged and returned in the response's `X-Request-ID` header, so one call can
be followed from the load balancer to the worker that served it.
"""

import logging
import os
import re
import time

from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions

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


# --- Browser-only middleware ------------------------------------------------------------------
# Sessions, users and messages serve the pages people open in a browser (the admin, the API
# docs). API calls carry a key, never a cookie, so on API paths these are skipped: they cost
# about a tenth of an invocation. Subclasses, so Django's admin checks still find them.
API_PATH_PREFIXES = ("/api/models/", "/v1/", "/health", "/ready", "/version")


class _SkippedForApi:
    def __call__(self, request):
        if request.path_info.startswith(API_PATH_PREFIXES):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(_SkippedForApi, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(_SkippedForApi, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(_SkippedForApi, messages.MessageMiddleware):
    pass
