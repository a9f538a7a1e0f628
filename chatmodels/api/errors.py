"""Every error the HTTP side answers, in OpenAI's format: `{"error": {message, type, param, code}}`.

Domain exceptions, DRF's exceptions and Django's own 400/403/404/500 handlers all end here, so a
client sees one shape on every path and never a traceback.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.views import defaults
from rest_framework import exceptions as drf
from rest_framework.views import exception_handler as drf_exception_handler

from chatmodels.api import routes
from chatmodels.exceptions import (
    AliasNotFound,
    ChatDataError,
    ChatModelsError,
    InvalidModelOutput,
    InvalidRequest,
    MetricsNotAllowed,
    ModelLoadError,
    ModelNotAllowed,
    ModelNotFound,
    ModelRaised,
    ModelTimeout,
    NotFound,
    QuotaExhausted,
    RateLimited,
    RequestTooLarge,
    ServerBusy,
    ServiceUnavailable,
    VersionNotFound,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorKind:
    status: int
    type: str
    code: str | None


INVALID = ErrorKind(400, "invalid_request_error", "invalid_value")
UNAUTHENTICATED = ErrorKind(401, "invalid_request_error", "invalid_api_key")
FORBIDDEN = ErrorKind(403, "permission_error", "model_not_allowed")
PERMISSION_DENIED = ErrorKind(403, "permission_error", "permission_denied")
NOT_FOUND = ErrorKind(404, "invalid_request_error", "not_found")
METHOD_NOT_ALLOWED = ErrorKind(405, "invalid_request_error", "method_not_allowed")
TOO_LARGE = ErrorKind(413, "invalid_request_error", "request_too_large")
UNSUPPORTED_MEDIA = ErrorKind(415, "invalid_request_error", "unsupported_media_type")
THROTTLED = ErrorKind(429, "rate_limit_error", "rate_limit_exceeded")
# OpenAI's own answer when an account's quota is used up (its SDKs raise RateLimitError).
QUOTA_EXHAUSTED = ErrorKind(429, "insufficient_quota", "insufficient_quota")
METRICS_FORBIDDEN = ErrorKind(403, "permission_error", "metrics_not_allowed")
MODEL_ERROR = ErrorKind(500, "server_error", "model_error")
SERVER_ERROR = ErrorKind(500, "server_error", None)
UNAVAILABLE = ErrorKind(503, "server_error", "unavailable")
BAD_MODEL_OUTPUT = ErrorKind(502, "server_error", "invalid_model_output")
BUSY = ErrorKind(503, "server_error", "server_busy")
MODEL_TIMEOUT = ErrorKind(504, "server_error", "model_timeout")

# Domain error -> kind, most specific first.
_DOMAIN_KINDS: tuple[tuple[type[ChatModelsError], ErrorKind], ...] = (
    (RequestTooLarge, TOO_LARGE),
    (ModelNotAllowed, FORBIDDEN),
    (MetricsNotAllowed, METRICS_FORBIDDEN),
    (ServerBusy, BUSY),
    (QuotaExhausted, QUOTA_EXHAUSTED),
    (RateLimited, THROTTLED),
    (ServiceUnavailable, UNAVAILABLE),
    (ModelTimeout, MODEL_TIMEOUT),
    (ModelNotFound, ErrorKind(404, "invalid_request_error", "model_not_found")),
    (VersionNotFound, ErrorKind(404, "invalid_request_error", "version_not_found")),
    (AliasNotFound, ErrorKind(404, "invalid_request_error", "alias_not_found")),
    (NotFound, NOT_FOUND),
    (ChatDataError, INVALID),
    (InvalidRequest, INVALID),
    (ModelRaised, MODEL_ERROR),
    (ModelLoadError, SERVER_ERROR),
    (InvalidModelOutput, BAD_MODEL_OUTPUT),
)

_DRF_KINDS: tuple[tuple[type[drf.APIException], ErrorKind], ...] = (
    (drf.NotAuthenticated, UNAUTHENTICATED),
    (drf.AuthenticationFailed, UNAUTHENTICATED),
    (drf.PermissionDenied, PERMISSION_DENIED),
    (drf.NotFound, NOT_FOUND),
    (drf.MethodNotAllowed, METHOD_NOT_ALLOWED),
    (drf.UnsupportedMediaType, UNSUPPORTED_MEDIA),
    (drf.Throttled, THROTTLED),
    (drf.ParseError, ErrorKind(400, "invalid_request_error", "invalid_json")),
    (drf.ValidationError, INVALID),
)


def error_body(message: str, kind: ErrorKind, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind.type, "param": param, "code": kind.code}}


def error_response(
    message: str, kind: ErrorKind, param: str | None = None, headers: dict | None = None
) -> HttpResponse:
    return HttpResponse(
        json.dumps(error_body(message, kind, param)),
        status=kind.status,
        content_type="application/json",
        headers=headers,
    )


def domain_error_kind(error: ChatModelsError) -> ErrorKind:
    for error_class, kind in _DOMAIN_KINDS:
        if isinstance(error, error_class):
            return kind
    return INVALID


def domain_error_response(error: ChatModelsError) -> HttpResponse:
    retry_after = getattr(error, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return error_response(error.message, domain_error_kind(error), error.param, headers=headers)


def exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
    """DRF's EXCEPTION_HANDLER: domain and DRF errors as OpenAI error objects."""
    if isinstance(exc, ChatModelsError):
        return domain_error_response(exc)
    if isinstance(exc, drf.APIException):
        response = drf_exception_handler(exc, context)  # keeps WWW-Authenticate, Retry-After
        kind = next((k for cls, k in _DRF_KINDS if isinstance(exc, cls)), None)
        kind = kind or ErrorKind(exc.status_code, "invalid_request_error", exc.default_code)
        headers = {
            name: value
            for name, value in (response.items() if response is not None else ())
            if name in ("WWW-Authenticate", "Retry-After", "Allow")
        }
        return error_response(_drf_message(exc), kind, headers=headers)
    if isinstance(exc, RecursionError):
        return error_response("The request body is nested too deeply.", INVALID)
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
    return error_response("Bad request.", INVALID)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_admin(request):
        return defaults.permission_denied(request, exception)
    return error_response("Permission denied.", FORBIDDEN)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_admin(request):
        return defaults.page_not_found(request, exception)
    return error_response(f"Unknown URL: {request.method} {request.path}", NOT_FOUND)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_admin(request):
        return defaults.server_error(request)
    return error_response("Internal server error; the details are in the server log.", SERVER_ERROR)
