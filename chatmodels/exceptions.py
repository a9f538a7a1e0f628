"""Domain errors, raised where a problem is known and translated once at each edge.

Django-free: the packaging and type layers raise these too. `api/errors.py` maps them to HTTP
status codes and the OpenAI error object; management commands print `str(error)` on one line.
"""


class ChatModelsError(Exception):
    """Base of every error chatmodels raises on purpose. `param` names the offending field."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def __str__(self) -> str:
        return self.message


class ChatDataError(ChatModelsError, ValueError):
    """A chat object (message, params, response…) has a missing or wrongly typed field."""


class InvalidRequest(ChatModelsError):
    """A client request breaks the signature or the API's rules (HTTP 400)."""


class NotFound(ChatModelsError):
    """Base for unknown names (HTTP 404)."""


class ModelNotFound(NotFound):
    pass


class VersionNotFound(NotFound):
    pass


class AliasNotFound(NotFound):
    pass


class RegistrationError(ChatModelsError):
    """Registration refused: bad name, target, artifact, example or model behaviour."""


class InvalidName(RegistrationError):
    pass


class InvalidTarget(RegistrationError):
    """`module:Class` or `file.py:Class` could not be loaded or is not a ChatModel."""


class SignatureNotAllowed(RegistrationError):
    """ChatModel signatures are always generated; a caller-supplied one is refused."""


class ModelRaised(ChatModelsError):
    """The user's model raised in load_context, predict or predict_stream (HTTP 500)."""


class InvalidModelOutput(ChatModelsError):
    """The model returned something that is not a valid ChatResponse/ChatChunk (HTTP 502)."""


class PackageIntegrityError(ChatModelsError):
    """A stored package does not match its digest or is malformed; nothing from it was run."""


class ImmutableVersionError(ChatModelsError):
    """Attempt to change the content of a registered version."""


class ApiKeyNotFound(NotFound):
    pass


class RequestTooLarge(InvalidRequest):
    """The request body is over the configured limit (HTTP 413)."""


class ModelNotAllowed(ChatModelsError):
    """The API key may not call this model (HTTP 403)."""


class ServiceUnavailable(ChatModelsError):
    """A dependency (database, package storage) does not answer (HTTP 503)."""


class ModelLoadError(ChatModelsError):
    """A stored version could not be loaded: package missing, digest mismatch (HTTP 500)."""


class ServerBusy(ChatModelsError):
    """No capacity freed up within the queue timeout: the server or the model is full (HTTP 503).

    `retry_after` is the number of seconds a client should wait before trying again.
    """

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelTimeout(ChatModelsError):
    """The model gave no answer (or no next chunk) within CHATMODELS_MODEL_TIMEOUT (HTTP 504)."""


class RateLimited(ChatModelsError):
    """An API key is over its requests or tokens per minute (HTTP 429, Retry-After).

    `retry_after` is the number of seconds after which the request would be let through.
    """

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExhausted(RateLimited):
    """An API key has used its monthly token budget (HTTP 429, `insufficient_quota`)."""


class MetricsNotAllowed(ChatModelsError):
    """The API key may not read GET /metrics (HTTP 403)."""
