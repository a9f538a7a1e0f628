"""The admin's "Model workers" page and its restart button, with real worker processes (a model
invoked through Django's test client runs in a worker of this process's own supervisor)."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from chatmodels.models import RegisteredModel
from chatmodels.serving.workers import client as workers
from tests.api.calls import completion_text, error_of, post
from tests.helpers import chat, make_key, register
from tests.live import poll
from tests.sample_models import TriggerModel
from tests.worker_models import CrashingModel

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

WORKERS = reverse("admin:chatmodels_registeredmodel_workers")
RESTART = reverse("admin:chatmodels_registeredmodel_restart_workers")
MODEL_LIST = reverse("admin:chatmodels_registeredmodel_changelist")


def invoke(client: Client, name: str, text: str = "hello"):
    return post(client, f"/api/models/{name}/invocations", chat(text), key=make_key()[1])


def html_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_the_page_lists_a_worker_started_by_an_invocation(admin_client):
    register(name="echo", model=TriggerModel(), worker_replicas=1, worker_memory_mb=512)
    assert completion_text(invoke(admin_client, "echo")) == "hello"
    [worker] = workers.snapshot()

    html = html_of(admin_client.get(WORKERS))

    model = RegisteredModel.objects.get(name="echo")
    change_url = reverse("admin:chatmodels_registeredmodel_change", args=[model.pk])
    assert f'<a href="{change_url}">echo</a>' in html
    assert "1 replica per server process · limit 512 MiB" in html
    assert "<td>v1</td>" in html
    assert f'<td class="cm-number">{os.getpid()}</td>' in html  # the gateway: this process
    assert f'<td class="cm-number">{worker.pid}</td>' in html
    assert '<span class="cm-status cm-status-ready">ready</span>' in html
    assert "Restart workers" in html
    assert "1 server process running models" in html


def test_the_page_says_when_no_worker_runs(admin_client):
    register(name="echo", model=TriggerModel())

    assert "No model workers run on this host" in html_of(admin_client.get(WORKERS))
    one = html_of(admin_client.get(WORKERS, {"model": "echo"}))
    assert "No workers of echo run on this host; its next request starts them." in one
    assert "Restart workers" not in one


def test_the_model_list_and_each_model_page_link_the_page(admin_client):
    register(name="echo", model=TriggerModel())
    model = RegisteredModel.objects.get(name="echo")

    assert f'href="{WORKERS}"' in html_of(admin_client.get(MODEL_LIST))
    change_url = reverse("admin:chatmodels_registeredmodel_change", args=[model.pk])
    assert f'href="{WORKERS}?model=echo"' in html_of(admin_client.get(change_url))


def test_the_restart_button_restarts_the_models_workers_and_comes_back(admin_client):
    register(name="echo", model=TriggerModel())
    invoke(admin_client, "echo")
    [before] = workers.snapshot()
    back = f"{WORKERS}?model=echo"

    response = admin_client.post(RESTART, {"model": "echo", "next": back}, follow=True)

    assert response.redirect_chain == [(back, 302)]
    assert "Restarting the workers of echo in 1 server process of this host." in (
        response.content.decode()
    )
    assert poll(lambda: before.pid not in {w.pid for w in workers.snapshot()}, until=bool)
    assert completion_text(invoke(admin_client, "echo")) == "hello"
    assert [w.pid for w in workers.snapshot()] != [before.pid]


def test_the_restart_button_of_an_unknown_model_says_so(admin_client):
    response = admin_client.post(RESTART, {"model": "nope", "next": "https://elsewhere.example/"})

    assert response.status_code == 302 and response["Location"] == WORKERS
    page = html_of(admin_client.get(WORKERS))
    assert "Could not restart the workers of “nope”: model &#x27;nope&#x27; not found" in page


def test_a_crash_loop_is_shown_as_unavailable_and_the_button_clears_it(admin_client, settings):
    settings.CHATMODELS_WORKER_CRASH_LIMIT = 2
    register(name="crashy", model=CrashingModel())
    for _ in range(2):
        assert error_of(invoke(admin_client, "crashy", "exit"), 502)["code"] == "model_crashed"
    assert error_of(invoke(admin_client, "crashy"), 503)["code"] == "model_unavailable"

    html = html_of(admin_client.get(WORKERS))

    assert '<span class="cm-status cm-status-unavailable">unavailable</span>' in html
    assert "Restart workers" in html

    admin_client.post(RESTART, {"model": "crashy"})

    assert "unavailable" not in html_of(admin_client.get(WORKERS)).split("<tbody", 1)[-1]
    assert completion_text(invoke(admin_client, "crashy")) == "hello"


def test_restarting_needs_the_change_permission_and_csrf(admin_user, django_user_model):
    register(name="echo", model=TriggerModel())
    staff = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer = Client()
    viewer.force_login(staff)
    assert viewer.get(WORKERS).status_code == 403  # not even the view permission

    staff.user_permissions.add(Permission.objects.get(codename="view_registeredmodel"))
    invoke(viewer, "echo")
    page = html_of(viewer.get(WORKERS))
    assert ">echo</a>" in page and "Restart workers" not in page
    [before] = workers.snapshot()
    assert viewer.post(RESTART, {"model": "echo"}).status_code == 403
    assert viewer.get(RESTART).status_code == 405

    anonymous = Client()
    assert anonymous.post(RESTART, {"model": "echo"}).status_code == 302  # to the login page
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(RESTART, {"model": "echo"}).status_code == 403
    assert [w.pid for w in workers.snapshot()] == [before.pid]
    assert workers.snapshot()[0].state == "ready"
