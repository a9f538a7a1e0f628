"""HTTP endpoints: the registry listings, invocations, the OpenAI-compatible routes, health.

Views stay thin: read the request, call `selectors` or the chat pipeline (`serving.pipeline`),
shape the answer. Each declares the errors it raises (`@raises`); what it takes and answers is
declared in `api/openapi.py`. Errors are domain exceptions, turned into OpenAI error objects by
`api/errors.py`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from typing import Any

import django
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from rest_framework import generics, mixins, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import chatmodels
from chatmodels import metrics, selectors
from chatmodels.api import openapi
from chatmodels.api.asyncviews import AsyncAPIView, AsyncGenericViewSet
from chatmodels.api.auth import ApiKeyAuthentication, CanReadMetrics, CanReadUsage, api_key
from chatmodels.api.serializers import (
    ModelVersionSerializer,
    RegisteredModelSerializer,
    UsageQuerySerializer,
    UsageRowSerializer,
)
from chatmodels.exceptions import (
    ConversationNotFound,
    InvalidRequest,
    MetricsNotAllowed,
    ModelNotFound,
    NotFound,
    PermissionDenied,
    PreviousResponseNotFound,
    ServiceUnavailable,
    VersionNotFound,
    raises,
    short_repr,
)
from chatmodels.models import ModelVersion, package_storage
from chatmodels.selectors import ApiKeyInfo
from chatmodels.serving import stored_responses
from chatmodels.serving.dialects.base import ChatDialect
from chatmodels.serving.dialects.chat_completions import CHAT_COMPLETIONS, INVOCATIONS
from chatmodels.serving.dialects.responses_answer import ResponsesDialect
from chatmodels.serving.pipeline import (
    CHAT_ERRORS,
    LOOKUP_ERRORS,
    answer_chat,
    check_model_allowed,
    read_json_object,
)

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# The registry: /api/models/...


def _visible_models(request: Request):
    models = selectors.list_models()
    key = api_key(request)
    if key is not None and key.restricted:
        models = models.filter(api_keys=key.id)
    return models


@openapi.registered_models
class RegisteredModelViewSet(mixins.ListModelMixin, AsyncGenericViewSet):
    """Registered models, and chat invocations of their versions."""

    serializer_class = RegisteredModelSerializer
    lookup_field = "name"

    def get_queryset(self):
        return _visible_models(self.request)

    @openapi.model_retrieve
    @raises(ModelNotFound)
    def retrieve(self, request: Request, name: str) -> Response:
        model = selectors.is_model_name(name) and selectors.list_models().filter(name=name).first()
        if not model:
            raise ModelNotFound(f"model '{name}' not found", param="model")
        check_model_allowed(api_key(request), name)
        return Response(self.get_serializer(model).data)

    @openapi.invocations  # type: ignore[type-var]  # its stubs know no async view
    @raises(*CHAT_ERRORS)
    @action(detail=True, methods=["post"], url_path="invocations")
    async def invocations(self, request: Request, name: str) -> HttpResponseBase:
        return await answer_invocations(request, api_key(request), name, read_json_object(request))


async def answer_invocations(
    request: HttpRequest | Request, key: ApiKeyInfo | None, name: str, body: dict[str, Any]
) -> HttpResponseBase:
    """`POST /api/models/<name>/invocations`: the version `?version=N` or `?alias=A` names,
    else the latest."""
    _check_body_model(body, name)
    version_text = request.GET.get("version")
    alias = request.GET.get("alias")
    if version_text is not None and alias is not None:
        raise InvalidRequest("give either version or alias, not both", param="version")
    if alias == "":
        raise InvalidRequest("alias: expected an alias name, got ''", param="alias")
    version = selectors.parse_version_number(version_text) if version_text is not None else None
    return await answer_chat(
        body,
        request=request,
        key=key,
        name=name,
        version=version,
        alias=alias,
        served_name=name,
        dialect=INVOCATIONS,
    )


def _check_body_model(body: dict, name: str) -> None:
    """The URL names the model; a body's `model` (as OpenAI clients send) may only agree."""
    model = body.get("model")
    if model is None or model == name:
        return
    if isinstance(model, str) and model.partition("/")[0].partition("@")[0] == name:
        raise InvalidRequest(
            f"model: {short_repr(model, 60)} in the body; a version or alias goes in the query"
            f" string here (?version=N or ?alias=A), or call /v1/chat/completions",
            param="model",
        )
    raise InvalidRequest(
        f"model: this URL serves '{name}', the body names {short_repr(model, 60)}: leave model"
        " out, or call /v1/chat/completions with it",
        param="model",
    )


@openapi.model_versions
@raises(ModelNotFound)
class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """The versions of one model, newest first."""

    serializer_class = ModelVersionSerializer
    lookup_field = "version"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular's schema generation
            return ModelVersion.objects.none()
        name = self.kwargs["name"]
        check_model_allowed(api_key(self.request), name)
        model = selectors.get_model(name=name)
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


class ChatCompletionsView(AsyncAPIView):
    """`POST /v1/chat/completions` with `model` = `name`, `name/VERSION` or `name@ALIAS`."""

    @openapi.chat_completions
    @raises(*CHAT_ERRORS)
    async def post(self, request: Request) -> HttpResponseBase:
        return await answer_chat_completions(request, api_key(request), read_json_object(request))


async def answer_chat_completions(
    request: HttpRequest | Request, key: ApiKeyInfo | None, body: dict[str, Any]
) -> HttpResponseBase:
    """`POST /v1/chat/completions`."""
    return await _answer_model_reference(request, key, body, _model_reference(body))


class ResponsesView(AsyncAPIView):
    """`POST /v1/responses`: the OpenAI Responses API, answered by the chat pipeline (`model`
    as for /v1/chat/completions) in the Responses dialect; stored unless `store: false`, and
    continuing a stored response or conversation (`serving/stored_responses.py`)."""

    @openapi.responses_create
    @raises(*CHAT_ERRORS, PreviousResponseNotFound, ConversationNotFound)
    async def post(self, request: Request) -> HttpResponseBase:
        return await answer_responses(request, api_key(request), read_json_object(request))


async def answer_responses(
    request: HttpRequest | Request, key: ApiKeyInfo | None, body: dict[str, Any]
) -> HttpResponseBase:
    """`POST /v1/responses`: answered, then stored unless `store: false`."""
    reference = _model_reference(body)
    continued = await stored_responses.continuation(body, key)
    dialect = ResponsesDialect(body, model=reference, context=continued.items)
    answer = await _answer_model_reference(request, key, body, reference, dialect=dialect)
    return await stored_responses.keep(
        answer,
        dialect,
        continued=continued,
        key=key,
        model_name=selectors.parse_model_reference(reference)[0],
    )


def _model_reference(body: dict[str, Any]) -> str:
    """The body's `model`: `name`, `name/N` or `name@ALIAS` (400 when it is missing)."""
    reference = body.get("model")
    if not isinstance(reference, str) or not reference:
        raise InvalidRequest(
            "model: is required ('name', 'name/VERSION' or 'name@ALIAS')", param="model"
        )
    return reference


async def _answer_model_reference(
    request: HttpRequest | Request,
    key: ApiKeyInfo | None,
    body: dict[str, Any],
    reference: str,
    *,
    dialect: ChatDialect = CHAT_COMPLETIONS,
) -> HttpResponseBase:
    """Answer an OpenAI-style body with the version `reference` (its `model`) names."""
    name, version, alias = selectors.parse_model_reference(reference)
    return await answer_chat(
        body,
        request=request,
        key=key,
        name=name,
        version=version,
        alias=alias,
        served_name=reference,
        dialect=dialect,
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

    @openapi.openai_models
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

    @openapi.openai_model
    @raises(*LOOKUP_ERRORS)
    def get(self, request: Request, model: str) -> HttpResponse:
        name, version, alias = selectors.parse_model_reference(
            model, not_a_reference_is_unknown=True
        )
        check_model_allowed(api_key(request), name)
        found = selectors.resolve_version(name=name, version=version, alias=alias)
        created = found.model_created_at if version is None and alias is None else found.created_at
        return HttpResponse(
            json.dumps(_openai_model(model, created)), content_type="application/json"
        )


# ---------------------------------------------------------------------------------------------
# Usage: /api/usage/


@openapi.usage
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
        key = api_key(self.request)
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

    @openapi.health
    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(b'{"status": "ok"}', content_type="application/json")


class ReadyView(_PublicView):
    """The database and the package storage answer. Why one does not is told only to the server
    log: the caller is anonymous, and an exception's text can hold hosts, paths and users."""

    @openapi.ready
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
    """Prometheus metrics of every worker process of this host."""

    permission_classes = [CanReadMetrics]
    throttle_classes: list = []

    @openapi.metrics
    @raises(MetricsNotAllowed, NotFound)  # NotFound: CHATMODELS_METRICS=false
    def get(self, request: Request) -> HttpResponse:
        if not metrics.enabled():
            raise NotFound("metrics are turned off (CHATMODELS_METRICS=false)")
        return HttpResponse(metrics.render(), content_type=metrics.CONTENT_TYPE)


class VersionView(_PublicView):
    """What is running."""

    @openapi.version
    def get(self, request: Request) -> HttpResponse:
        body = {
            "chatmodels": chatmodels.__version__,
            "python": platform.python_version(),
            "django": django.get_version(),
        }
        return HttpResponse(json.dumps(body), content_type="application/json")
