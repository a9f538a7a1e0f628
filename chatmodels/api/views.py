"""HTTP endpoints: the registry listings, invocations, the OpenAI-compatible routes, health.

Views stay thin: read the request, call `selectors` and `runtime`, shape the answer. Errors are
domain exceptions, turned into OpenAI error objects by `api/errors.py`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Callable
from typing import Any

import django
from django.db import connection
from django.http import HttpResponse
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import chatmodels
from chatmodels import metrics, selectors
from chatmodels.api.auth import ApiKeyAuthentication, CanReadMetrics, CanReadUsage
from chatmodels.api.serializers import (
    CHAT_COMPLETIONS_REQUEST_SCHEMA,
    CHAT_REQUEST_SCHEMA,
    CHAT_RESPONSE_SCHEMA,
    CHAT_STREAM_SCHEMA,
    HEALTH_SCHEMA,
    MODEL_REFERENCE_SCHEMA,
    OPENAI_MODEL_LIST_SCHEMA,
    OPENAI_MODEL_SCHEMA,
    READY_SCHEMA,
    RESPONSE_EVENT_SCHEMA,
    VERSION_NUMBER_SCHEMA,
    VERSION_SCHEMA,
    ModelVersionSerializer,
    RegisteredModelSerializer,
    UsageQuerySerializer,
    UsageRowSerializer,
)
from chatmodels.exceptions import (
    AliasNotFound,
    ChatDataError,
    InvalidModelOutput,
    InvalidRequest,
    MetricsNotAllowed,
    ModelLoadError,
    ModelNotAllowed,
    ModelNotFound,
    ModelRaised,
    ModelTimeout,
    NotFound,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    RequestTooLarge,
    ServerBusy,
    ServiceUnavailable,
    VersionNotFound,
    raises,
)
from chatmodels.models import ModelVersion, package_storage
from chatmodels.serving import responses
from chatmodels.serving.pipeline import (
    CHAT_COMPLETIONS,
    ChatDialect,
    answer_chat,
    check_model_allowed,
    read_json_object,
)

logger = logging.getLogger(__name__)

NAME_REGEX = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"

# Schema: what each operation raises (its 4xx/5xx responses are generated from these classes),
# its parameters, and examples that work as they are in Swagger's "Try it out" (with the demo
# model `echo` of the README registered).

# Finding a model by name (or `name/VERSION`, `name@ALIAS`) and checking the key may call it.
_LOOKUP_ERRORS = (InvalidRequest, ModelNotAllowed, ModelNotFound, VersionNotFound, AliasNotFound)
# Everything `read_json_object` and `answer_chat` can raise, on top of the lookup.
_CHAT_ERRORS = (
    *_LOOKUP_ERRORS,
    ChatDataError,
    RequestTooLarge,
    ModelRaised,
    ModelLoadError,
    InvalidModelOutput,
    ServerBusy,
    ModelTimeout,
    RateLimited,
    QuotaExhausted,
)
_NAME = OpenApiParameter(
    "name",
    str,
    OpenApiParameter.PATH,
    description="A registered model's name.",
    examples=[OpenApiExample("echo", value="echo")],
)
_CHAT_ANSWERS = {
    (200, "application/json"): OpenApiResponse(
        CHAT_RESPONSE_SCHEMA, description="An OpenAI chat.completion"
    ),
    (200, "text/event-stream"): OpenApiResponse(
        CHAT_STREAM_SCHEMA, description="With `stream: true`: " + CHAT_STREAM_SCHEMA["description"]
    ),
}
_HELLO = [{"role": "user", "content": "Hello!"}]


# ---------------------------------------------------------------------------------------------
# Chat: shared by /api/models/<name>/invocations and /v1/chat/completions


# ---------------------------------------------------------------------------------------------
# The registry: /api/models/...


def _visible_models(request: Request):
    models = selectors.list_models()
    key = request.auth
    if key is not None and key.restricted:
        models = models.filter(api_keys=key.id)
    return models


@extend_schema(tags=["models"])
class RegisteredModelViewSet(viewsets.ReadOnlyModelViewSet):
    """Registered models, and chat invocations of their versions."""

    serializer_class = RegisteredModelSerializer
    lookup_field = "name"
    lookup_value_regex = NAME_REGEX

    def get_queryset(self):
        return _visible_models(self.request)

    @extend_schema(parameters=[_NAME])
    @raises(ModelNotFound, ModelNotAllowed)
    def retrieve(self, request: Request, name: str) -> Response:
        model = selectors.is_model_name(name) and selectors.list_models().filter(name=name).first()
        if not model:
            raise ModelNotFound(f"model '{name}' not found", param="model")
        check_model_allowed(request.auth, model.pk, name)
        return Response(self.get_serializer(model).data)

    @extend_schema(
        summary="Chat with a version of this model",
        description="An OpenAI chat-completions request. The latest ready version by default.",
        parameters=[
            _NAME,
            OpenApiParameter(
                "version",
                VERSION_NUMBER_SCHEMA,
                description="A version number (give either version or alias, not both).",
            ),
            OpenApiParameter(
                "alias", {"type": "string", "minLength": 1}, description="An alias, such as prod."
            ),
        ],
        request={"application/json": CHAT_REQUEST_SCHEMA},
        responses=_CHAT_ANSWERS,
        examples=[
            OpenApiExample("A question", value={"messages": _HELLO}, request_only=True),
            OpenApiExample(
                "Streamed, with usage",
                value={
                    "messages": _HELLO,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
                request_only=True,
            ),
        ],
    )
    @raises(*_CHAT_ERRORS)
    @action(detail=True, methods=["post"], url_path="invocations")
    def invocations(self, request: Request, name: str) -> HttpResponse:
        body = read_json_object(request)
        version_text = request.query_params.get("version")
        alias = request.query_params.get("alias")
        if version_text is not None and alias is not None:
            raise InvalidRequest("give either version or alias, not both", param="version")
        if alias == "":
            raise InvalidRequest("alias: expected an alias name, got ''", param="alias")
        version = selectors.parse_version_number(version_text) if version_text is not None else None
        return answer_chat(
            body,
            request=request,
            key=request.auth,
            name=name,
            version=version,
            alias=alias,
            served_name=name,
        )


_VERSION = OpenApiParameter(
    "version",
    VERSION_NUMBER_SCHEMA,
    OpenApiParameter.PATH,
    examples=[OpenApiExample("1", value=1)],
)


@extend_schema(tags=["models"])
@extend_schema_view(
    list=extend_schema(parameters=[_NAME]), retrieve=extend_schema(parameters=[_NAME, _VERSION])
)
@raises(ModelNotFound, ModelNotAllowed)
class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """The versions of one model, newest first."""

    serializer_class = ModelVersionSerializer
    lookup_field = "version"
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular's schema generation
            return ModelVersion.objects.none()
        name = self.kwargs["name"]
        model = selectors.get_model(name=name)
        check_model_allowed(self.request.auth, model.pk, name)
        return selectors.list_versions(name=name, model=model)

    @raises(InvalidRequest, VersionNotFound)
    def retrieve(self, request: Request, name: str, version: str) -> Response:
        number = selectors.parse_version_number(version)
        found = self.get_queryset().filter(version=number).first()
        if found is None:
            raise VersionNotFound(f"model '{name}' has no version {number}", param="version")
        return Response(self.get_serializer(found).data)


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible: /v1/chat/completions, /v1/models


class ChatCompletionsView(APIView):
    """`POST /v1/chat/completions` with `model` = `name`, `name/VERSION` or `name@ALIAS`."""

    @extend_schema(
        tags=["openai"],
        request={"application/json": CHAT_COMPLETIONS_REQUEST_SCHEMA},
        responses=_CHAT_ANSWERS,
        examples=[
            OpenApiExample(
                "A question", value={"model": "echo", "messages": _HELLO}, request_only=True
            ),
            OpenApiExample(
                "Streamed, with usage",
                value={
                    "model": "echo",
                    "messages": _HELLO,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
                request_only=True,
            ),
        ],
    )
    @raises(*_CHAT_ERRORS)
    def post(self, request: Request) -> HttpResponse:
        return _answer_model_reference(request)


def _answer_model_reference(
    request: Request, dialect: Callable[[dict[str, Any], str], ChatDialect] | None = None
) -> HttpResponse:
    """Answer an OpenAI-style body whose `model` (`name`, `name/N`, `name@ALIAS`) names the
    version; `dialect(body, model)` makes the dialect (default: chat completions)."""
    body = read_json_object(request)
    reference = body.get("model")
    if not isinstance(reference, str) or not reference:
        raise InvalidRequest(
            "model: is required ('name', 'name/VERSION' or 'name@ALIAS')", param="model"
        )
    name, version, alias = selectors.parse_model_reference(reference)
    return answer_chat(
        body,
        request=request,
        key=request.auth,
        name=name,
        version=version,
        alias=alias,
        served_name=reference,
        dialect=CHAT_COMPLETIONS if dialect is None else dialect(body, reference),
    )


class ResponsesView(APIView):
    """`POST /v1/responses`: the OpenAI Responses API, stateless, answered by the chat pipeline
    (`model` as for /v1/chat/completions)."""

    @extend_schema(
        tags=["openai"],
        summary="Create a model response (OpenAI Responses API, stateless)",
        request={
            "application/json": {
                **responses.REQUEST_SCHEMA,
                "properties": {
                    **responses.REQUEST_SCHEMA["properties"],
                    "model": MODEL_REFERENCE_SCHEMA,
                },
            }
        },
        responses={
            (200, "application/json"): OpenApiResponse(
                responses.RESPONSE_SCHEMA, description="A response object"
            ),
            (200, "text/event-stream"): OpenApiResponse(
                RESPONSE_EVENT_SCHEMA,
                description="With `stream: true`: " + RESPONSE_EVENT_SCHEMA["description"],
            ),
        },
        examples=[
            OpenApiExample(
                "A question", value={"model": "echo", "input": "Hello!"}, request_only=True
            ),
            OpenApiExample(
                "Streamed, with instructions",
                value={
                    "model": "echo",
                    "instructions": "Answer briefly.",
                    "input": [{"role": "user", "content": "Hello!"}],
                    "stream": True,
                },
                request_only=True,
            ),
        ],
    )
    @raises(*_CHAT_ERRORS)
    def post(self, request: Request) -> HttpResponse:
        return _answer_model_reference(
            request, lambda body, model: responses.ResponsesDialect(body, model=model)
        )


def _openai_model(model_id: str, created_at) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": int(created_at.timestamp()),
        "owned_by": "chatmodels",
    }


class OpenAIModelsView(APIView):
    """`GET /v1/models`: every model the key may call, by name and by each `name@alias`."""

    @extend_schema(tags=["openai"], responses={200: OPENAI_MODEL_LIST_SCHEMA})
    def get(self, request: Request) -> HttpResponse:
        data = []
        for model in _visible_models(request):
            data.append(_openai_model(model.name, model.created_at))
            for alias in model.aliases.all():
                data.append(_openai_model(f"{model.name}@{alias.name}", model.created_at))
        return HttpResponse(
            json.dumps({"object": "list", "data": data}), content_type="application/json"
        )


class OpenAIModelView(APIView):
    """`GET /v1/models/<model>`: one model (`name`, `name/VERSION` or `name@ALIAS`)."""

    @extend_schema(
        tags=["openai"],
        operation_id="v1_model_retrieve",
        parameters=[
            OpenApiParameter(
                "model",
                MODEL_REFERENCE_SCHEMA,
                OpenApiParameter.PATH,
                examples=[OpenApiExample("echo", value="echo")],
            )
        ],
        responses={200: OpenApiResponse(OPENAI_MODEL_SCHEMA, description="An OpenAI model")},
    )
    @raises(*_LOOKUP_ERRORS)
    def get(self, request: Request, model: str) -> HttpResponse:
        name, version, alias = selectors.parse_model_reference(model)
        found = selectors.resolve_version(name=name, version=version, alias=alias)
        check_model_allowed(request.auth, found.model_id, name)
        created = found.model_created_at if version is None and alias is None else found.created_at
        return HttpResponse(
            json.dumps(_openai_model(model, created)), content_type="application/json"
        )


# ---------------------------------------------------------------------------------------------
# Usage: /api/usage/


@extend_schema(
    tags=["usage"],
    parameters=[UsageQuerySerializer],
    responses={200: UsageRowSerializer(many=True)},
)
@raises(InvalidRequest, PermissionDenied)
class UsageView(generics.ListAPIView):
    """Requests, tokens, errors and latency per model, version, API key and hour (or day),
    newest first. An API key sees its own usage; a staff session sees everyone's."""

    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [CanReadUsage]
    serializer_class = UsageRowSerializer

    def get_queryset(self):
        # A plain dict, not the QueryDict: DRF would read `?until=` as "not given" (HTML form
        # rules), where an empty value is a bad value, as the schema says.
        query = UsageQuerySerializer(data=self.request.query_params.dict())
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        self.bucket = filters.pop("bucket")
        key = self.request.auth
        if key is not None:
            if filters.get("key") not in (None, key.prefix):
                raise PermissionDenied("An API key sees only its own usage.")
            filters.pop("key", None)
            filters["key_id"] = key.id
        else:
            filters["key_prefix"] = filters.pop("key", None)
        return selectors.list_usage(bucket=self.bucket, **filters)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "bucket": getattr(self, "bucket", "hour")}


# ---------------------------------------------------------------------------------------------
# Health


class _PublicView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []


class HealthView(_PublicView):
    """The process is up."""

    @extend_schema(tags=["health"], responses={200: HEALTH_SCHEMA})
    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(b'{"status": "ok"}', content_type="application/json")


class ReadyView(_PublicView):
    """The database and the package storage answer. Why one does not is told only to the server
    log: the caller is anonymous, and an exception's text can hold hosts, paths and users."""

    @extend_schema(tags=["health"], responses={200: READY_SCHEMA})
    @raises(ServiceUnavailable)
    def get(self, request: Request) -> HttpResponse:
        checks = {}
        for check_name, check in (("database", _check_database), ("storage", _check_storage)):
            try:
                check()
            except Exception as error:
                logger.warning(
                    "readiness check %s failed: %s: %s", check_name, type(error).__name__, error
                )
                checks[check_name] = "unavailable"
            else:
                checks[check_name] = "ok"
        if "unavailable" in checks.values():
            statuses = ", ".join(f"{name}: {status}" for name, status in checks.items())
            raise ServiceUnavailable(f"not ready ({statuses}); the causes are in the server log")
        return HttpResponse(
            json.dumps({"status": "ready", "checks": checks}), content_type="application/json"
        )


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_storage() -> None:
    storage = package_storage()
    location = getattr(storage, "location", None)
    if isinstance(location, str) and not getattr(storage, "bucket_name", None):
        os.makedirs(location, exist_ok=True)
        if not os.access(location, os.W_OK):
            raise OSError(f"{location} is not writable")
        return
    storage.exists("ready-check")  # a round trip to the object store


class MetricsView(APIView):
    """Prometheus metrics of every worker process of this host (DESIGN §7)."""

    permission_classes = [CanReadMetrics]
    throttle_classes: list = []

    @extend_schema(
        tags=["health"],
        responses={(200, "text/plain"): OpenApiResponse(description="Prometheus text format")},
    )
    @raises(MetricsNotAllowed, NotFound)  # NotFound: CHATMODELS_METRICS=false
    def get(self, request: Request) -> HttpResponse:
        if not metrics.enabled():
            raise NotFound("metrics are turned off (CHATMODELS_METRICS=false)")
        return HttpResponse(metrics.render(), content_type=metrics.CONTENT_TYPE)


class VersionView(_PublicView):
    """What is running."""

    @extend_schema(tags=["health"], responses={200: VERSION_SCHEMA})
    def get(self, request: Request) -> HttpResponse:
        body = {
            "chatmodels": chatmodels.__version__,
            "python": platform.python_version(),
            "django": django.get_version(),
        }
        return HttpResponse(json.dumps(body), content_type="application/json")
