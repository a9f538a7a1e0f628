"""Middleware: a request id on every response; sessions, users and messages only where used."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.api.calls import COMPLETIONS, INVOCATIONS, get, post
from tests.helpers import chat

pytestmark = pytest.mark.django_db


def test_every_response_carries_a_request_id(client, echo, key):
    given = client.get("/health", HTTP_X_REQUEST_ID="lb-123")
    made = post(client, INVOCATIONS, key=key)

    assert given["X-Request-ID"] == "lb-123"
    assert len(made["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda client, key: post(client, INVOCATIONS, key=key), id="invocation"),
        pytest.param(
            lambda client, key: post(client, COMPLETIONS, chat(model="echo"), key=key),
            id="chat-completions",
        ),
        pytest.param(lambda client, key: get(client, "/v1/models", key=key), id="v1-models"),
        pytest.param(lambda client, key: get(client, "/api/models/", key=key), id="model-list"),
        pytest.param(lambda client, key: client.get("/health"), id="health"),
        pytest.param(lambda client, key: client.get("/api/docs/"), id="api-docs"),
        pytest.param(lambda client, key: client.get("/"), id="landing-page"),
        pytest.param(lambda client, key: client.get("/nope"), id="unknown-url"),
    ],
)
def test_requests_outside_the_admin_skip_sessions_users_and_messages(
    client, admin_user, echo, key, settings, call
):
    # Sent with an admin session cookie: it is not read outside the admin.
    client.force_login(admin_user)

    response = call(client, key)

    assert response.status_code in (200, 404)
    request = response.wsgi_request
    assert not hasattr(request, "session")
    assert not hasattr(request, "_messages")
    assert getattr(request, "user", None) != admin_user  # DRF may set its own (key) user
    assert settings.SESSION_COOKIE_NAME not in response.cookies


def test_admin_pages_have_the_session_user_and_messages(admin_client):
    response = admin_client.get(reverse("admin:chatmodels_registeredmodel_changelist"))

    assert response.status_code == 200
    request = response.wsgi_request
    assert request.user.is_superuser
    assert request.session.session_key
    assert hasattr(request, "_messages")


def test_the_admin_at_another_url_is_still_recognised_as_the_admin(admin_user, client, settings):
    # The route decides, not the path: move the admin to /manage/ and it keeps its session.
    settings.ROOT_URLCONF = "tests.api.urls_admin_elsewhere"
    client.force_login(admin_user)

    page = client.get("/manage/")
    missing = client.get("/admin/")

    assert page.status_code == 200
    assert page.wsgi_request.user == admin_user
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/json"


def test_api_views_that_accept_a_staff_session_get_it(admin_client):
    # /api/usage/ takes a key or a staff session (DRF's SessionAuthentication on the view).
    response = admin_client.get(reverse("usage"))

    assert response.status_code == 200
    assert response.wsgi_request.user.is_superuser
