"""The admin playground: a chat page for staff and the JSON view it posts to.

Both are routed by `RegisteredModelAdmin.get_urls()` behind `admin_site.admin_view` (staff
session, CSRF). The invoke view resolves the version and calls `runtime.invoke` server-side,
exactly as the HTTP API would, without an API key.
"""

from __future__ import annotations

import json
import logging
import time

from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from chatmodels import runtime, selectors
from chatmodels.api import errors
from chatmodels.exceptions import (
    ChatModelsError,
    InvalidRequest,
)
from chatmodels.models import ModelAlias, ModelVersion, RegisteredModel
from chatmodels.types import ChatRequest

logger = logging.getLogger(__name__)


def _check_permission(request: HttpRequest, model_admin) -> None:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied


def playground_models(*, site: str = "admin") -> list[dict]:
    """Every model with its versions (number, status, admin page) and aliases (3 queries)."""
    models = RegisteredModel.objects.only("name").prefetch_related(
        Prefetch(
            "versions",
            queryset=ModelVersion.objects.only("model", "version", "status").order_by("-version"),
        ),
        Prefetch("aliases", queryset=ModelAlias.objects.select_related(None).order_by("name")),
    )
    result = []
    for model in models:
        versions = list(model.versions.all())
        by_pk = {version.pk: version.version for version in versions}
        ready = [version.version for version in versions if version.status == "ready"]
        result.append(
            {
                "name": model.name,
                "latest": ready[0] if ready else None,
                "versions": [
                    {
                        "version": version.version,
                        "status": version.status,
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
def playground_invoke(request: HttpRequest, *, model_admin) -> HttpResponse:
    """Body: {"model", "version" | "alias", "messages", "temperature"?, "max_tokens"?, ...}."""
    _check_permission(request, model_admin)
    try:
        payload = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        return errors.error_response("The request body is not valid JSON.", errors.INVALID)
    if not isinstance(payload, dict):
        return errors.error_response("Expected a JSON object.", errors.INVALID)

    name = payload.pop("model", None)
    alias = payload.pop("alias", None) or None
    try:
        if not isinstance(name, str) or not name:
            raise InvalidRequest("model: choose a model", param="model")
        number = payload.pop("version", None)
        number = selectors.parse_version_number(str(number)) if number not in (None, "") else None
        version = selectors.resolve_version(name=name, version=number, alias=alias)
        payload["stream"] = False
        chat_request = ChatRequest.from_dict(payload)
        served_name = f"{name}@{alias}" if alias else f"{name}/{version.version}"
        started = time.perf_counter()
        completion = runtime.invoke(version, chat_request, served_name=served_name)
        elapsed_ms = (time.perf_counter() - started) * 1000
    except ChatModelsError as error:
        return errors.domain_error_response(error)  # the same statuses as the HTTP API
    except Exception:
        logger.exception("playground invocation failed", extra={"model": name})
        return errors.error_response(
            "Unexpected server error; see the server log.", errors.SERVER_ERROR
        )
    return JsonResponse(
        {
            "model": name,
            "version": version.version,
            "version_url": reverse(
                f"{model_admin.admin_site.name}:chatmodels_modelversion_change", args=[version.id]
            ),
            "elapsed_ms": round(elapsed_ms, 1),
            "completion": completion,
        }
    )
