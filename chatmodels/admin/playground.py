"""The admin playground: a chat page for staff and the JSON view it posts to.

Both are routed by `RegisteredModelAdmin.get_urls()` behind `admin_site.admin_view` (staff
session, CSRF). The page needs the view permission on registered models; invoking needs
`chatmodels.invoke_model`. The invoke view answers through the API's chat pipeline
(`answer_chat`: resolve → parse → admit → invoke → stream) with the user's own playground key
(`services.playground_key`): their usage is counted against it, and its limits, if an admin set
some, apply.
"""

from __future__ import annotations

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
from chatmodels.serving.pipeline import answer_chat, read_json_object

logger = logging.getLogger(__name__)


INVOKE_PERMISSION = "chatmodels.invoke_model"


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
    """Body: {"model", "version" | "alias", "messages", "temperature"?, "max_tokens"?, ...}.

    Always answered as a stream (`text/event-stream` of `chat.completion.chunk` events, then
    `data: [DONE]`) by the API's own pipeline, with the user's playground key. Each chunk's
    `model` is `name/N`: the version that answered, whatever the page asked for (an alias, the
    latest).
    403 (an OpenAI error object) without the `chatmodels.invoke_model` permission.
    An error before the stream starts is an OpenAI error object with the API's status.
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
        payload["stream"] = True  # the playground shows the answer as it comes
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
        )
    except ChatModelsError as error:
        return errors.error_response(error)  # the same statuses as the HTTP API
    except Exception:
        logger.exception("playground invocation failed", extra={"model": name})
        return errors.error_response(
            ChatModelsError("Unexpected server error; see the server log.")
        )
