"""The admin's "Model workers" page: every live model worker of this host's server processes, per
model, with a button that restarts a model's workers (and clears a crash loop).

Both views are routed by `RegisteredModelAdmin.get_urls()` behind `admin_site.admin_view` (staff
session, CSRF). The page reads the host's board (`serving.workers.client.host_board`); the
button calls `services.restart_model_workers`, as `manage.py restart_workers` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET, require_POST

from chatmodels import services
from chatmodels.admin import display
from chatmodels.admin.display import EMPTY
from chatmodels.exceptions import ChatModelsError
from chatmodels.models import RegisteredModel
from chatmodels.serving.workers import client as workers
from chatmodels.serving.workers.board import BoardWorker, UnavailableVersion

MIB = 1024 * 1024


def workers_url(*, model: str | None = None) -> str:
    """The page, showing one model when given."""
    url = reverse("admin:chatmodels_registeredmodel_workers")
    return f"{url}?{urlencode({'model': model})}" if model else url


@dataclass
class ModelWorkers:
    """One model's rows on the page."""

    name: str
    pk: int | None = None  # None: no such model in the registry (any more)
    replicas: int = 1
    memory_limit_mb: int | None = None
    workers: list[BoardWorker] = field(default_factory=list)
    unavailable: list[UnavailableVersion] = field(default_factory=list)

    @property
    def row_count(self) -> int:
        return len(self.workers) + len(self.unavailable)

    @property
    def worker_rows(self) -> list[dict[str, Any]]:
        return [worker_row(worker) for worker in self.workers]

    @property
    def url(self) -> str | None:
        if self.pk is None:
            return None
        return reverse("admin:chatmodels_registeredmodel_change", args=[self.pk])


def worker_row(worker: BoardWorker) -> dict[str, Any]:
    """A worker as the page shows it."""
    return {
        "version": worker.version,
        "version_id": worker.version_id,
        "gateway_pid": worker.gateway_pid,
        "pid": worker.pid,
        "memory_mib": EMPTY if worker.rss_bytes is None else f"{worker.rss_bytes / MIB:,.0f}",
        "in_flight": worker.in_flight,
        "restarts": worker.restarts,
        "state": display.badge(worker.state, worker.state),
        "started": display.compact_datetime(worker.started_at),
    }


def models_on_board(only: str | None = None) -> tuple[list[ModelWorkers], int]:
    """This host's workers and unavailable versions per model (by name), and how many server
    processes run any; `only` keeps one model, listed even when it has none."""
    board = workers.host_board()
    by_name: dict[str, ModelWorkers] = {}
    if only:
        by_name[only] = ModelWorkers(only)
    for worker in board.workers:
        if not only or worker.model_name == only:
            by_name.setdefault(worker.model_name, ModelWorkers(worker.model_name))
            by_name[worker.model_name].workers.append(worker)
    for version in board.unavailable:
        if not only or version.model_name == only:
            by_name.setdefault(version.model_name, ModelWorkers(version.model_name))
            by_name[version.model_name].unavailable.append(version)
    rows = RegisteredModel.objects.filter(name__in=by_name).values_list(
        "name", "pk", "worker_replicas", "worker_memory_mb"
    )
    for name, pk, replicas, memory_limit_mb in rows:
        model = by_name[name]
        model.pk, model.replicas, model.memory_limit_mb = pk, replicas, memory_limit_mb
    models = sorted(by_name.values(), key=lambda model: model.name)
    return models, len(board.gateways)


@require_GET
def workers_page(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    only = request.GET.get("model") or None
    models, gateways = models_on_board(only)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Model workers",
        "subtitle": None,
        "models": models,
        "only": only,
        "gateways": gateways,
        "can_restart": model_admin.has_change_permission(request),
        "page_url": request.get_full_path(),
        "all_url": workers_url(),
        "restart_url": reverse("admin:chatmodels_registeredmodel_restart_workers"),
    }
    return TemplateResponse(request, "admin/chatmodels/registeredmodel/workers.html", context)


@require_POST
def restart_workers(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    """POST `model` (a name): restart its workers on this host, then back to `next` (the page)."""
    if not model_admin.has_change_permission(request):
        raise PermissionDenied
    name = request.POST.get("model", "")
    try:
        restart = services.restart_model_workers(name=name)
    except ChatModelsError as error:
        messages.error(request, f"Could not restart the workers of “{name}”: {error}")
    else:
        messages.success(request, f"{restart}.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = workers_url()
    return HttpResponseRedirect(back)
