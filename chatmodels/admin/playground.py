"""The admin playground: a chat page for staff and the JSON view it posts to.

Both are routed by `RegisteredModelAdmin.get_urls()` behind `admin_site.admin_view` (staff
session, CSRF). The page needs the view permission on registered models; invoking needs
`chatmodels.invoke_model`. The invoke view answers through the API's chat pipeline
(`answer_chat`: resolve → parse → admit → invoke → stream) with the user's own playground key
(`services.playground_key`): their usage is counted against it, and its limits, if an admin set
some, apply.
"""

from __future__ import annotations

import json
import logging

from asgiref.sync import async_to_sync
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from chatmodels import selectors, services
from chatmodels.admin import display
from chatmodels.exceptions import (
    ChatModelsError,
    InvalidRequest,
)
from chatmodels.exceptions import PermissionDenied as ChatPermissionDenied
from chatmodels.models import ModelAlias, ModelVersion, RegisteredModel
from chatmodels.selectors import ApiKeyInfo
from chatmodels.serving import errors
from chatmodels.serving.dialects.base import sse
from chatmodels.serving.dialects.chat_completions import ChatCompletionsDialect
from chatmodels.serving.pipeline import answer_chat, read_json_object

logger = logging.getLogger(__name__)


INVOKE_PERMISSION = "chatmodels.invoke_model"


def staff_error_body(error: ChatModelsError) -> dict:
    """OpenAI's error object, plus for staff what the model raised (`detail`: the exception's
    type and message; API clients never see it, the server log has the traceback)."""
    body = errors.error_body(error)
    detail = getattr(error, "detail", None)
    if detail:
        body["error"]["detail"] = detail
    return body


class PlaygroundDialect(ChatCompletionsDialect):
    """Chat completions, with the cause of a model's failure in a stream's error event."""

    def failed(self, error: ChatModelsError):
        yield sse(staff_error_body(error))


PLAYGROUND = PlaygroundDialect()


def _check_permission(request: HttpRequest, model_admin) -> None:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied


def _playground_key(request: HttpRequest) -> ApiKeyInfo:
    """The user's playground key; 403 without the permission to invoke models."""
    if not request.user.has_perm(INVOKE_PERMISSION):
        raise ChatPermissionDenied(
            "you may not invoke models: ask an administrator for the 'Can invoke models' permission"
        )
    key = selectors.get_api_key_by_id(services.playground_key(user=request.user).pk)
    if key is None:
        raise ChatPermissionDenied("your playground key is revoked; ask an administrator")
    return key


def playground_models(*, site: str = "admin") -> list[dict]:
    """Every model with its versions (number, status, admin page) and aliases (3 queries)."""
    models = (
        RegisteredModel.objects.only("name")
        .with_latest_version()
        .prefetch_related(
            Prefetch(
                "versions",
                queryset=ModelVersion.objects.only("model", "version", "status").order_by(
                    "-version"
                ),
            ),
            Prefetch("aliases", queryset=ModelAlias.objects.select_related(None).order_by("name")),
        )
    )
    result = []
    for model in models:
        versions = list(model.versions.all())
        by_pk = {version.pk: version.version for version in versions}
        result.append(
            {
                "name": model.name,
                "latest": model.latest_version,
                "versions": [
                    {
                        "version": version.version,
                        "status": version.status,
                        "label": display.version_label(version),
                        "url": reverse(f"{site}:chatmodels_modelversion_change", args=[version.id]),
                    }
                    for version in versions
                ],
                "aliases": {
                    alias.name: by_pk.get(alias.version_id) for alias in model.aliases.all()
                },
            }
        )
    return result


@require_GET
def playground(request: HttpRequest, *, model_admin) -> HttpResponse:
    _check_permission(request, model_admin)
    config = {
        "models": playground_models(site=model_admin.admin_site.name),
        "selected": {
            "model": request.GET.get("model", ""),
            "version": request.GET.get("version", ""),
            "alias": request.GET.get("alias", ""),
        },
        "invokeUrl": reverse(
            f"{model_admin.admin_site.name}:chatmodels_registeredmodel_playground_invoke"
        ),
    }
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Playground",
        "subtitle": None,
        "playground_config": config,
        "has_models": bool(config["models"]),
    }
    return TemplateResponse(request, "chatmodels/playground.html", context)


@require_POST
def playground_invoke(request: HttpRequest, *, model_admin) -> HttpResponseBase:
    """Body: {"model", "version" | "alias", "messages", "stream"?, "temperature"?,
    "max_tokens"?, "tools"?, "custom_inputs"?, ...}: a chat request, answered by the API's own
    pipeline without an API key.

    As a stream by default (`text/event-stream` of `chat.completion.chunk` events with usage,
    then `data: [DONE]`); with `"stream": false`, one `chat.completion` (the model's `predict`).
    Answered by the API's own pipeline, with the user's playground key. Its `model` is
    `name/N`: the version that answered, whatever the page asked for (an alias, the latest).
    403 (an OpenAI error object) without the `chatmodels.invoke_model` permission. An error is
    an OpenAI error object with the API's status, and for staff the model's exception in
    `detail`.
    """
    _check_permission(request, model_admin)
    name = None
    try:
        key = _playground_key(request)
        payload = read_json_object(request)
        name = payload.pop("model", None)
        alias = payload.pop("alias", None) or None
        number = payload.pop("version", None)
        if not isinstance(name, str) or not name:
            raise InvalidRequest("model: choose a model", param="model")
        if alias is not None and not isinstance(alias, str):
            raise InvalidRequest("alias: expected a string", param="alias")
        number = selectors.parse_version_number(str(number)) if number not in (None, "") else None
        if number is not None and alias is not None:
            raise InvalidRequest("give either version or alias, not both", param="version")
        if payload.get("stream", True) is True:  # the answer shown as it comes, by default
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        # served_name=None: each chunk says `name/N`, so the page learns the version it got.
        return async_to_sync(answer_chat)(
            payload,
            request=request,
            key=key,
            name=name,
            version=number,
            alias=alias,
            served_name=None,
            dialect=PLAYGROUND,
        )
    except ChatModelsError as error:
        # The same statuses as the HTTP API, with the model's exception for staff.
        return HttpResponse(
            json.dumps(staff_error_body(error)),
            status=error.status_code,
            content_type="application/json",
            headers=error.headers,
        )
    except Exception:
        logger.exception("playground invocation failed", extra={"model": name})
        return errors.error_response(
            ChatModelsError("Unexpected server error; see the server log.")
        )
