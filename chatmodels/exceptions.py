"""Domain errors, raised where a problem is known and translated once at each edge.

Each class carries what the HTTP edge answers for it, as DRF's exceptions do: `status_code`, and
OpenAI's error `type` and `code`; anything not given its own is a 500 `server_error`. The first
line of each docstring says, for API users, when it happens: the OpenAPI schema is generated
from these classes (`api/schema.py`). Django-free: the packaging and type layers raise these too;
management commands print `str(error)` on one line.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

Decorated = TypeVar("Decorated", bound=Callable)


def short_repr(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, safe to put in an error message: a value whose
    `repr()` raises or is nested too deeply is named, not shown."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply to show"
    except Exception as error:  # a model's own __repr__ may raise
        return f"a {type(value).__name__} whose repr() raised {type(error).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class ErrorKind:
    """How usage counts an error: its `UsageBucket` counter, and what it means, for people."""

    counter: str
    label: str
    description: str


INVALID_REQUEST = ErrorKind(
    "invalid_requests", "invalid request (4xx)", "4xx but 429: bad input, a model not allowed"
)
REJECTED = ErrorKind(
    "rejected", "rejected (429/503)", "429 limits and 503 capacity: may be retried"
)
MODEL_ERROR = ErrorKind(
    "model_errors", "model error (500/502)", "500/502: the model raised or answered wrongly"
)
TIMEOUT = ErrorKind("timeouts", "timeout (504)", "504: the model did not answer in time")
ERROR_KINDS = (INVALID_REQUEST, REJECTED, MODEL_ERROR, TIMEOUT)


class ChatModelsError(Exception):
    """An internal server error; the details are in the server log."""

    status_code: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"  # OpenAI's error `type`
    code: ClassVar[str | None] = None  # OpenAI's error `code`
    usage_kind: ClassVar[ErrorKind] = MODEL_ERROR  # the usage counter it is counted in
    # A failure of the model itself: its `type` in chatmodels_model_errors_total (else None).
    model_error_type: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # the offending field, when there is one

    def __str__(self) -> str:
        return self.message

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the error response."""
        return {}


# --- 4xx: the client can fix it -----------------------------------------------------------------


class InvalidRequest(ChatModelsError):
    """Malformed JSON, a body that is not an object, or a request that breaks the signature or
    the API's rules (the message and `param` name the field)."""

    status_code = 400
    usage_kind = INVALID_REQUEST
    type = "invalid_request_error"
    code = "invalid_value"


class ChatDataError(ChatModelsError, ValueError):
    """A chat object (message, params, response…) has a missing or wrongly typed field."""

    status_code = 400
    usage_kind = INVALID_REQUEST
    type = "invalid_request_error"
    code = "invalid_value"


class MissingParameter(ChatDataError):
    """A required field is missing (or null)."""

    code = "missing_required_parameter"


class EmptyArray(ChatDataError):
    """A list that must hold at least one item is empty."""

    code = "empty_array"


class RequestTooLarge(InvalidRequest):
    """The request body is over CHATMODELS_MAX_REQUEST_BYTES."""

    status_code = 413
    code = "request_too_large"


class RequestTimeout(InvalidRequest):
    """The request body did not arrive within CHATMODELS_BODY_TIMEOUT."""

    status_code = 408
    code = "request_timeout"


class Unauthenticated(ChatModelsError):
    """No API key, a malformed Authorization header, or an unknown or revoked key."""

    status_code = 401
    usage_kind = INVALID_REQUEST
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(ChatModelsError):
    """The API key may not do this."""

    status_code = 403
    usage_kind = INVALID_REQUEST
    type = "permission_error"
    code = "permission_denied"


class ModelNotAllowed(PermissionDenied):
    """The API key may not call this model."""

    code = "model_not_allowed"


class MetricsNotAllowed(PermissionDenied):
    """The API key may not read GET /metrics."""

    code = "metrics_not_allowed"


class NotFound(ChatModelsError):
    """Nothing is found here (an unknown URL, or a page past the last)."""

    status_code = 404
    usage_kind = INVALID_REQUEST
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    """No registered model has this name."""

    code = "model_not_found"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        # As OpenAI's: its model_not_found names no param, whatever field held the name.
        super().__init__(message, param=None)


class VersionNotFound(NotFound):
    """The model has no version with this number."""

    code = "version_not_found"


class AliasNotFound(NotFound):
    """The model has no alias with this name."""

    code = "alias_not_found"


class ApiKeyNotFound(NotFound):
    """No API key matches."""


class ResponseNotFound(NotFound):
    """No stored response has this id for this API key (or it was deleted or pruned)."""


class ConversationNotFound(NotFound):
    """No conversation has this id for this API key (or it was deleted)."""


class ItemNotFound(NotFound):
    """The conversation has no item with this id."""


class PreviousResponseNotFound(InvalidRequest):
    """`previous_response_id` names no stored response of this API key."""

    code = "previous_response_not_found"


class MethodNotAllowed(ChatModelsError):
    """The route does not take this HTTP method (`Allow` lists those it takes)."""

    status_code = 405
    usage_kind = INVALID_REQUEST
    type = "invalid_request_error"
    code = "method_not_allowed"


class NotAcceptable(ChatModelsError):
    """No answer in a media type the `Accept` header allows."""

    status_code = 406
    usage_kind = INVALID_REQUEST
    type = "invalid_request_error"
    code = "not_acceptable"


class UnsupportedMediaType(ChatModelsError):
    """The request body's Content-Type is not one the route reads."""

    status_code = 415
    usage_kind = INVALID_REQUEST
    type = "invalid_request_error"
    code = "unsupported_media_type"


class Throttled(ChatModelsError):
    """Over CHATMODELS_THROTTLE_RATE for this key (`Retry-After` says when to retry)."""

    status_code = 429
    usage_kind = REJECTED
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class RateLimited(Throttled):
    """The API key is over its requests or tokens per minute (`Retry-After` says when to retry)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds after which the request would be let through

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class QuotaExhausted(RateLimited):
    """The API key has used its monthly token budget (OpenAI's answer when a quota is used up:
    its SDKs raise RateLimitError)."""

    type = "insufficient_quota"
    code = "insufficient_quota"


class RegistrationError(ChatModelsError):
    """Registration refused: bad name, target, artifact, example or model behaviour."""

    status_code = 400
    usage_kind = INVALID_REQUEST
    type = "invalid_request_error"
    code = "invalid_value"


class InvalidName(RegistrationError):
    pass


class InvalidTarget(RegistrationError):
    """`module:Class` or `file.py:Class` could not be loaded or is not a ChatModel."""


class SignatureNotAllowed(RegistrationError):
    """ChatModel signatures are always generated; a caller-supplied one is refused."""


# --- 5xx: the model or the server failed ------------------------------------------------------


class ModelRaised(ChatModelsError):
    """The model raised (logged with its traceback on the server; none reaches the client)."""

    model_error_type = "raised"
    code = "model_error"


class ModelLoadError(ChatModelsError):
    """The model's stored package could not be loaded (missing, or not matching its digest)."""

    model_error_type = "load"
    code = "model_error"


class InvalidModelOutput(ChatModelsError):
    """The model returned something that is not a valid ChatResponse or ChatChunk."""

    model_error_type = "invalid_output"
    status_code = 502
    code = "invalid_model_output"


class ModelCrashed(ChatModelsError):
    """The model's worker process died (or was stopped) while answering; the model is started
    again for the next request."""

    model_error_type = "crashed"
    status_code = 502
    code = "model_crashed"


class ModelUnavailable(ChatModelsError):
    """The model keeps crashing (or the server is shutting down): it is not started again until
    it is fixed or restarted."""

    status_code = 503
    usage_kind = REJECTED
    code = "model_unavailable"


class ServiceUnavailable(ChatModelsError):
    """The database or the package storage does not answer."""

    status_code = 503
    usage_kind = REJECTED
    code = "unavailable"


class ServerBusy(ChatModelsError):
    """The server, or the model's max_concurrency, is at capacity and no slot freed up within
    CHATMODELS_QUEUE_TIMEOUT; safe to retry after `Retry-After` seconds (the model never ran)."""

    status_code = 503
    usage_kind = REJECTED
    code = "server_busy"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds a client should wait before trying again

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class LimitsUnavailable(ChatModelsError):
    """The API key has limits and the store that counts them did not answer within
    CHATMODELS_LIMITS_TIMEOUT (or failed recently); retry after `Retry-After` seconds. Keys
    without limits are not affected."""

    status_code = 503
    usage_kind = REJECTED
    code = "limits_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ModelTimeout(ChatModelsError):
    """The model gave no answer (streams: no next chunk) within CHATMODELS_MODEL_TIMEOUT."""

    status_code = 504
    usage_kind = TIMEOUT
    model_error_type = "timeout"
    code = "model_timeout"


class UpstreamFailed(ChatModelsError):
    """The model's upstream answered an error (the model raised `UpstreamError`): passed on with
    the upstream's status, type, code and `Retry-After`; 502 for a status that is not passed
    on and for an upstream that did not answer, 504 when it timed out."""

    status_code = 502
    code = "upstream_error"
    model_error_type = "upstream"

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message, param=param)
        # Per instance: what the upstream said (the class values are the schema's defaults).
        self.status_code = status  # type: ignore[misc]
        if type:
            self.type = type  # type: ignore[misc]
        elif status < 500:
            self.type = "invalid_request_error"  # type: ignore[misc]
        if code:
            self.code = code  # type: ignore[misc]
        self.retry_after = retry_after
        if status == 429 or status == 503:
            self.usage_kind = REJECTED  # type: ignore[misc]
        elif status == 504:
            self.usage_kind = TIMEOUT  # type: ignore[misc]
        elif status < 500:
            self.usage_kind = INVALID_REQUEST  # type: ignore[misc]
        if status < 500:
            self.model_error_type = None  # type: ignore[misc,assignment]  # the model did not fail

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


# --- not HTTP errors: default 500 if one ever reaches a client ---------------------------------


class PackageIntegrityError(ChatModelsError):
    """A stored package does not match its digest or is malformed; nothing from it was run."""


class ImmutableVersionError(ChatModelsError):
    """Attempt to change the content of a registered version."""


# --- what a view raises: declared next to it, read by the OpenAPI schema ---------------------


def raises(*error_classes: type[ChatModelsError]) -> Callable[[Decorated], Decorated]:
    """Declare the domain errors a view (class: all its operations) or a view method raises."""

    def declare(target: Decorated) -> Decorated:
        # Kept in the object's own __dict__: a subclass or an override declares its own.
        target._raises = (*target.__dict__.get("_raises", ()), *error_classes)  # type: ignore[attr-defined]
        return target

    return declare


def declared_errors(view_class: type, method: Callable | None) -> tuple[type[ChatModelsError], ...]:
    """What `@raises` declares for one operation: its class (and base classes) and its method."""
    found: list[type[ChatModelsError]] = []
    for cls in reversed(inspect.getmro(view_class)):
        found.extend(cls.__dict__.get("_raises", ()))
    found.extend(getattr(method, "_raises", ()))
    return tuple(dict.fromkeys(found))
