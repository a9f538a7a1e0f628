"""Every error the HTTP side answers, in OpenAI's format: `{"error": {message, type, param, code}}`.

Domain exceptions, DRF's exceptions and Django's own 400/403/404/500 handlers all end here, so a
client sees one shape on every path and never a traceback.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.views import defaults
from rest_framework import exceptions as drf
from rest_framework.views import exception_handler as drf_exception_handler

from chatmodels import exceptions as domain
from chatmodels.api import routes
from chatmodels.exceptions import ChatModelsError
from chatmodels.serving.errors import error_response

logger = logging.getLogger(__name__)

# DRF raises its own exceptions (authentication, throttles, routing, pagination); each has a
# domain twin that carries its OpenAI type and code. Most specific first.
_FROM_DRF: tuple[tuple[type[drf.APIException], type[ChatModelsError]], ...] = (
    (drf.NotAuthenticated, domain.Unauthenticated),
    (drf.AuthenticationFailed, domain.Unauthenticated),
    (drf.PermissionDenied, domain.PermissionDenied),
    (drf.NotFound, domain.NotFound),
    (drf.MethodNotAllowed, domain.MethodNotAllowed),
    (drf.NotAcceptable, domain.NotAcceptable),
    (drf.UnsupportedMediaType, domain.UnsupportedMediaType),
    (drf.Throttled, domain.Throttled),
    (drf.ParseError, domain.InvalidRequest),
    (drf.ValidationError, domain.InvalidRequest),
    (drf.APIException, ChatModelsError),
)
_DRF_HEADERS = ("WWW-Authenticate", "Retry-After", "Allow")


def from_drf(exc: drf.APIException) -> ChatModelsError:
    """The domain twin of one of DRF's exceptions, with DRF's message."""
    error_class = next(ours for theirs, ours in _FROM_DRF if isinstance(exc, theirs))
    return error_class(_drf_message(exc))


def exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
    """DRF's EXCEPTION_HANDLER: domain and DRF errors as OpenAI error objects."""
    if isinstance(exc, ChatModelsError):
        return error_response(exc)
    if isinstance(exc, drf.APIException):
        response = drf_exception_handler(exc, context)  # keeps WWW-Authenticate, Retry-After
        headers = {
            name: value
            for name, value in (response.items() if response is not None else ())
            if name in _DRF_HEADERS
        }
        return error_response(from_drf(exc), headers=headers)
    if isinstance(exc, RecursionError):
        return error_response(domain.InvalidRequest("The request body is nested too deeply."))
    return None  # anything else is a bug: Django logs it and handler500 answers


def _drf_message(exc: drf.APIException) -> str:
    detail = exc.detail
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_first(value)}" for key, value in detail.items())
    return _first(detail)


def _first(detail) -> str:
    if isinstance(detail, list):
        return "; ".join(str(item) for item in detail)
    return str(detail)


# Django's own handlers (project/urls.py): the admin keeps its HTML pages, the rest is JSON.


def _is_admin(request: HttpRequest) -> bool:
    return routes.is_admin(request)  # asked of urls.py, not of the path


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_admin(request):
        return defaults.bad_request(request, exception)
    return error_response(domain.InvalidRequest("Bad request."))


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_admin(request):
        return defaults.permission_denied(request, exception)
    return error_response(domain.PermissionDenied("Permission denied."))


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_admin(request):
        return defaults.page_not_found(request, exception)
    return error_response(domain.NotFound(f"Unknown URL: {request.method} {request.path}"))


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_admin(request):
        return defaults.server_error(request)
    return error_response(
        ChatModelsError("Internal server error; the details are in the server log.")
    )
