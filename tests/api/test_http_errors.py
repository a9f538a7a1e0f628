"""Django's own errors (unknown URL, wrong method, unknown host) in the OpenAI error shape, except
on the admin's routes, which keep Django's HTML error pages."""

from __future__ import annotations

import pytest

from tests.api.calls import COMPLETIONS, INVOCATIONS, error_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/nope"), ("post", "/v1/nothing"), ("get", "/api/models/echo/extra/path/")],
)
def test_an_unknown_url_is_a_json_404(client, key, method, path):
    response = getattr(client, method)(path, HTTP_AUTHORIZATION=f"Bearer {key}")

    error = error_of(response, 404)
    assert error["code"] == "not_found"
    assert path in error["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", COMPLETIONS),
        ("put", INVOCATIONS),
        ("get", INVOCATIONS),
        ("delete", "/api/models/"),
        ("post", "/v1/models"),
        ("post", "/health"),
    ],
)
def test_a_wrong_method_is_a_json_405(client, echo, key, method, path):
    response = getattr(client, method)(path, HTTP_AUTHORIZATION=f"Bearer {key}")

    error = error_of(response, 405)
    assert error["code"] == "method_not_allowed"
    assert method.upper() in error["message"]
    assert response["Allow"]


def test_a_request_for_an_unknown_host_is_a_json_400(client):
    response = client.get("/health", HTTP_HOST="evil.example")

    assert error_of(response, 400)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "host", "status"),
    [
        ("/admin/chatmodels/nothing-here/", "testserver", 404),
        ("/admin/", "evil.example", 400),  # refused before Django resolves the route
    ],
)
def test_errors_on_admin_routes_are_html_pages(admin_client, path, host, status):
    response = admin_client.get(path, HTTP_HOST=host)

    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
