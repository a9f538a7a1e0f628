"""HTTP endpoints: the registry listings, invocations, the OpenAI-compatible routes, health.

Views stay thin: read the request, call `selectors` and `runtime`, shape the answer. Errors are
domain exceptions, turned into OpenAI error objects by `api/errors.py`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Iterator
from typing import Any

import django
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import chatmodels
from chatmodels import runtime, selectors
from chatmodels.api import errors
from chatmodels.api.auth import check_model_allowed
from chatmodels.api.serializers import (
    CHAT_REQUEST_SCHEMA,
    CHAT_RESPONSE_SCHEMA,
    CHAT_STREAM_SCHEMA,
    ERROR_SCHEMA,
    OPENAI_MODEL_LIST_SCHEMA,
    ModelVersionSerializer,
    RegisteredModelSerializer,
)
from chatmodels.exceptions import (
    ChatModelsError,
    InvalidRequest,
    ModelNotFound,
    RequestTooLarge,
    ServiceUnavailable,
    VersionNotFound,
)
from chatmodels.models import ApiKey, ModelVersion, package_storage
from chatmodels.types import ChatRequest

logger = logging.getLogger(__name__)

NAME_REGEX = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_ERRORS = {
    status: OpenApiResponse(ERROR_SCHEMA, description=text)
    for status, text in (
        (
            400,
            "Malformed JSON, or a request that breaks the signature (the message names the field)",
        ),
        (401, "No API key, or a bad one"),
        (403, "The key may not call this model"),
        (404, "Unknown model, version or alias"),
        (413, "Request body too large"),
        (429, "Throttled"),
        (500, "The model raised"),
        (502, "The model returned output that is not a valid ChatResponse"),
    )
}
_CHAT_RESPONSES = {
    200: OpenApiResponse(CHAT_RESPONSE_SCHEMA, description="An OpenAI chat.completion"),
    **_ERRORS,
}


# ---------------------------------------------------------------------------------------------
# Chat: shared by /api/models/<name>/invocations and /v1/chat/completions


def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, whatever the Content-Type; 413 past the size limit."""
    limit = settings.CHATMODELS_MAX_REQUEST_BYTES
    declared = request._request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    raw = request._request.read(limit + 1)
    if len(raw) > limit:
        raise RequestTooLarge(f"request body is over the limit of {limit} bytes")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply") from None
    except ValueError as error:
        raise InvalidRequest(f"the request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"the request body must be a JSON object, got {type(body).__name__}", param=None
        )
    return body


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("stream_options: expected an object", param="stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise InvalidRequest(
            "stream_options.include_usage: expected a boolean", param="stream_options.include_usage"
        )
    return include


def answer_chat(
    request: Request,
    body: dict[str, Any],
    *,
    name: str,
    version: int | None,
    alias: str | None,
    served_name: str,
) -> HttpResponse:
    """Resolve the version (every request: alias moves are seen at once), check, invoke, answer."""
    model_version = selectors.resolve_version(name=name, version=version, alias=alias)
    check_model_allowed(request, model_version.model_id, name)
    chat_request = ChatRequest.from_dict(body)
    if chat_request.stream:
        chunks = runtime.invoke_stream(
            model_version,
            chat_request,
            served_name=served_name,
            include_usage=_include_usage(body),
        )
        response = StreamingHttpResponse(
            _server_sent_events(chunks), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # proxies must not buffer the stream
        return response
    completion = runtime.invoke(model_version, chat_request, served_name=served_name)
    return HttpResponse(json.dumps(completion), content_type="application/json")


def _server_sent_events(chunks: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    try:
        for chunk in chunks:
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
    except ChatModelsError as error:
        body = errors.error_body(error.message, errors.domain_error_kind(error), error.param)
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
        return
    except Exception:
        logger.exception("stream failed")
        body = errors.error_body("the stream failed; see the server log", errors.SERVER_ERROR)
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
        return
    yield b"data: [DONE]\n\n"


# ---------------------------------------------------------------------------------------------
# The registry: /api/models/...


def _visible_models(request: Request):
    models = selectors.list_models()
    key = request.auth
    if isinstance(key, ApiKey) and getattr(key, "restricted", True):
        models = models.filter(api_keys=key)
    return models


@extend_schema(tags=["models"])
class RegisteredModelViewSet(viewsets.ReadOnlyModelViewSet):
    """Registered models, and chat invocations of their versions."""

    serializer_class = RegisteredModelSerializer
    lookup_field = "name"
    lookup_value_regex = NAME_REGEX

    def get_queryset(self):
        return _visible_models(self.request)

    @extend_schema(responses={200: RegisteredModelSerializer, **_ERRORS})
    def retrieve(self, request: Request, name: str) -> Response:
        model = selectors.list_models().filter(name=name).first()
        if model is None:
            raise ModelNotFound(f"model '{name}' not found", param="model")
        check_model_allowed(request, model, name)
        return Response(self.get_serializer(model).data)

    @extend_schema(
        summary="Chat with a version of this model",
        description="An OpenAI chat-completions request. The latest ready version by default.",
        parameters=[
            OpenApiParameter("version", int, description="a version number"),
            OpenApiParameter("alias", str, description="an alias, such as prod"),
        ],
        request={"application/json": CHAT_REQUEST_SCHEMA},
        responses=_CHAT_RESPONSES,
    )
    @action(detail=True, methods=["post"], url_path="invocations")
    def invocations(self, request: Request, name: str) -> HttpResponse:
        body = read_json_object(request)
        version_text = request.query_params.get("version")
        alias = request.query_params.get("alias") or None
        if version_text is not None and alias is not None:
            raise InvalidRequest("give either version or alias, not both", param="version")
        version = selectors.parse_version_number(version_text) if version_text else None
        return answer_chat(request, body, name=name, version=version, alias=alias, served_name=name)


@extend_schema(tags=["models"])
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
        check_model_allowed(self.request, model, name)
        return selectors.list_versions(name=name, model=model)

    @extend_schema(responses={200: ModelVersionSerializer, **_ERRORS})
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
        request={"application/json": CHAT_REQUEST_SCHEMA},
        responses={
            **_CHAT_RESPONSES,
            200: OpenApiResponse(
                CHAT_RESPONSE_SCHEMA,
                description="chat.completion; with stream=true, text/event-stream "
                + CHAT_STREAM_SCHEMA["description"],
            ),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        body = read_json_object(request)
        reference = body.get("model")
        if not isinstance(reference, str) or not reference:
            raise InvalidRequest(
                "model: is required ('name', 'name/VERSION' or 'name@ALIAS')", param="model"
            )
        name, version, alias = selectors.parse_model_reference(reference)
        return answer_chat(
            request, body, name=name, version=version, alias=alias, served_name=reference
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

    @extend_schema(tags=["openai"], responses={200: OPENAI_MODEL_LIST_SCHEMA, 401: ERROR_SCHEMA})
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
        responses={200: OpenApiResponse(description="An OpenAI model"), **_ERRORS},
    )
    def get(self, request: Request, model: str) -> HttpResponse:
        name, version, alias = selectors.parse_model_reference(model)
        found = selectors.resolve_version(name=name, version=version, alias=alias)
        check_model_allowed(request, found.model_id, name)
        created = found.model.created_at if version is None and alias is None else found.created_at
        return HttpResponse(
            json.dumps(_openai_model(model, created)), content_type="application/json"
        )


# ---------------------------------------------------------------------------------------------
# Health


class _PublicView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []


class HealthView(_PublicView):
    """The process is up."""

    @extend_schema(tags=["health"], responses={200: {"type": "object"}})
    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(b'{"status": "ok"}', content_type="application/json")


class ReadyView(_PublicView):
    """The database and the package storage answer."""

    @extend_schema(tags=["health"], responses={200: {"type": "object"}, 503: ERROR_SCHEMA})
    def get(self, request: Request) -> HttpResponse:
        checks = {}
        for check_name, check in (("database", _check_database), ("storage", _check_storage)):
            try:
                check()
            except Exception as error:
                logger.warning("readiness check %s failed: %s", check_name, error)
                raise ServiceUnavailable(f"{check_name} is not available: {error}") from None
            checks[check_name] = "ok"
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


class VersionView(_PublicView):
    """What is running."""

    @extend_schema(tags=["health"], responses={200: {"type": "object"}})
    def get(self, request: Request) -> HttpResponse:
        body = {
            "chatmodels": chatmodels.__version__,
            "python": platform.python_version(),
            "django": django.get_version(),
        }
        return HttpResponse(json.dumps(body), content_type="application/json")
