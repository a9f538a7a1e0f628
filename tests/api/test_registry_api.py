"""The registry over HTTP: model and version listings and details, `/v1/models`."""

from __future__ import annotations

import pytest

from tests.api.calls import error_of, get
from tests.helpers import register
from tests.sample_models import TriggerModel

pytestmark = pytest.mark.django_db


def test_model_list_is_paginated_with_aliases_tags_and_latest(client, key):
    register(name="echo", model=TriggerModel(), aliases=["prod"], tags={"team": "search"})
    register(name="echo", model=TriggerModel(), description="second")
    register(name="alpha", model=TriggerModel())

    body = get(client, "/api/models/", key=key).json()

    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2 and body["next"] is None and body["previous"] is None
    alpha, echo = body["results"]
    assert alpha["name"] == "alpha" and alpha["latest_version"] == 1
    assert echo["name"] == "echo"
    assert echo["latest_version"] == 2
    assert echo["aliases"] == {"prod": 1}
    assert echo["tags"] == {"team": "search"}
    assert {"description", "created_at", "updated_at"} <= set(echo)


def test_model_detail_and_version_list_and_detail(client, echo, key):
    model = get(client, "/api/models/echo/", key=key).json()
    versions = get(client, "/api/models/echo/versions/", key=key).json()
    version = get(client, "/api/models/echo/versions/1/", key=key).json()

    assert model["name"] == "echo" and model["latest_version"] == 2
    assert model["aliases"] == {"prod": 1}
    assert versions["count"] == 2
    assert [v["version"] for v in versions["results"]] == [2, 1]
    assert version["name"] == "echo"
    assert version["version"] == 1
    assert version["aliases"] == ["prod"]
    assert set(version["signature"]) == {"inputs", "outputs"}
    assert version["signature"]["inputs"]["type"] == "object"
    assert "messages" in version["signature"]["inputs"]["properties"]
    assert version["input_example"]["messages"] == [{"role": "user", "content": "Hello!"}]
    assert len(version["digest"]) == 64
    for field in ("created_at", "created_by", "python_version", "package_versions"):
        assert field in version


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/models/nope/", 404, "model_not_found"),
        ("/api/models/nope/versions/", 404, "model_not_found"),
        ("/api/models/echo/versions/9/", 404, "version_not_found"),
        ("/api/models/echo/versions/abc/", 400, "invalid_value"),
        ("/api/models/?page=99", 404, "not_found"),
        ("/v1/models/nope", 404, "model_not_found"),
        ("/v1/models/echo@nope", 404, "alias_not_found"),
    ],
)
def test_registry_lookups_of_unknown_things(client, echo, key, path, status, code):
    assert error_of(get(client, path, key=key), status)["code"] == code


def test_openai_model_list_has_names_and_aliases(client, echo, key):
    register(name="alpha", model=TriggerModel(), aliases=["canary", "prod"])

    body = get(client, "/v1/models", key=key).json()

    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [
        "alpha",
        "alpha@canary",
        "alpha@prod",
        "echo",
        "echo@prod",
    ]
    assert {m["object"] for m in body["data"]} == {"model"}
    assert all(isinstance(m["created"], int) and m["owned_by"] for m in body["data"])


@pytest.mark.parametrize("reference", ["echo", "echo/1", "echo@prod"])
def test_openai_model_detail(client, echo, key, reference):
    body = get(client, f"/v1/models/{reference}", key=key).json()

    assert body["id"] == reference
    assert body["object"] == "model"
