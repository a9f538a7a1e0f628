"""Request logs (one JSON line per request), the session middleware API calls skip, and Django's
own middleware made to run on the event loop under ASGI.

Structured request logs: one JSON line per request with method, path, status and duration.

Each request gets an id, taken from a well-formed `X-Request-ID` sent by a proxy or load balancer
or made here; it is logged and returned in the response's `X-Request-ID` header, so one call can
be followed from the load balancer to the worker that served it.
"""

import logging
import os
import re
import time
import warnings
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security
from whitenoise import middleware as whitenoise

from chatmodels.api import routes

logger = logging.getLogger("chatmodels.requests")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")


class RequestLogMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = _serves_async(self, get_response)

    def __call__(self, request):
        if self.async_mode:
            return self._acall(request)
        started = time.perf_counter()
        request_id = take_request_id(request)
        response = self.get_response(request)
        log_request(request, response, request_id, started)
        return response

    async def _acall(self, request):
        started = time.perf_counter()
        request_id = take_request_id(request)
        response = await self.get_response(request)
        log_request(request, response, request_id, started)
        return response


def log_request(request, response, request_id: str, started: float) -> None:
    """The request's log line, and its id in the response's X-Request-ID."""
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


def _serves_async(middleware: Any, get_response: Callable[[Any], Any]) -> bool:
    """Whether `middleware` sits in an async chain (then Django awaits it: marked so)."""
    if iscoroutinefunction(get_response):
        markcoroutinefunction(middleware)
        return True
    return False


def take_request_id(request) -> str:
    """The request's id: a well-formed X-Request-ID it came with, else a new one."""
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()
    request.request_id = request_id
    return request_id


# --- Django's middleware on the event loop ----------------------------------------------------
# Under ASGI, Django runs each hook of a MiddlewareMixin middleware in a thread (it cannot know
# whether the hook blocks): seven middleware, about fifteen thread hand-offs per request. The
# hooks below only read and write the request and the response (headers, cookies, a lazy
# session), so they run on the loop; what does touch the database (saving a session, reading
# messages stored in it) stays in a thread (`_OnlyWhereSessionsAreUsed`). Settings keep naming
# Django's classes (its deploy checks look for those names); the ASGI handler
# (`api/front.py`) loads these subclasses in their place (`ON_THE_LOOP`).


class _OnTheLoop:
    # What the Django middleware each subclass also derives from provides.
    get_response: Callable[[Any], Any]

    def __init__(self, get_response) -> None:
        super().__init__(get_response)  # type: ignore[call-arg]
        process_view = getattr(self, "process_view", None)
        if iscoroutinefunction(get_response) and process_view is not None:
            self.process_view = _as_coroutine(process_view)

    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


def _as_coroutine(method: Callable[..., Any]) -> Callable[..., Any]:
    async def on_the_loop(*args: Any) -> Any:
        return method(*args)

    return on_the_loop


class SecurityMiddleware(_OnTheLoop, security.SecurityMiddleware):
    pass


class CommonMiddleware(_OnTheLoop, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(_OnTheLoop, csrf.CsrfViewMiddleware):
    pass


class XFrameOptionsMiddleware(_OnTheLoop, clickjacking.XFrameOptionsMiddleware):
    pass


class WhiteNoiseMiddleware(whitenoise.WhiteNoiseMiddleware):
    """WhiteNoise in an async chain: a request for anything but a static file passes straight
    on; a static file is opened in a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, settings=django_settings) -> None:
        with warnings.catch_warnings():
            # WhiteNoise warns with a Python warning and its source line; say what to do instead.
            warnings.filterwarnings("ignore", message="No directory at")
            super().__init__(get_response, settings)
        if settings.STATIC_ROOT and not os.path.isdir(settings.STATIC_ROOT) and not settings.DEBUG:
            logging.getLogger("chatmodels").warning(
                "No static files in %s: run `manage.py collectstatic` (./scripts/serve does);"
                " until then the admin and the API docs have no styles",
                settings.STATIC_ROOT,
            )
        self.async_mode = _serves_async(self, get_response)

    def __call__(self, request):
        if self.async_mode:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)


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

    def __init__(self, get_response) -> None:
        super().__init__(get_response)  # type: ignore[call-arg]
        if iscoroutinefunction(get_response):
            # Their request halves only set lazy attributes: no thread needed.
            self.process_view = _as_coroutine(self.process_view)  # type: ignore[method-assign]

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


# What the ASGI handler loads in place of the middleware settings.MIDDLEWARE names.
ON_THE_LOOP = {
    "django.middleware.security.SecurityMiddleware": f"{__name__}.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware": f"{__name__}.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware": f"{__name__}.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware": f"{__name__}.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware": f"{__name__}.XFrameOptionsMiddleware",
}
