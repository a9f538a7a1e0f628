"""API keys: no, bad or revoked key is a 401; a key limited to other models a 403."""

from __future__ import annotations

import json

import pytest

from chatmodels import services
from tests.api.calls import COMPLETIONS, INVOCATIONS, completion_text, error_of, get, post
from tests.helpers import chat, make_key, register
from tests.sample_models import TriggerModel

pytestmark = pytest.mark.django_db


def _revoked_key() -> str:
    api_key, raw = make_key(name="old")
    services.revoke_api_key(key=api_key)
    return raw


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="no-key"),
        pytest.param("Bearer cm_not-a-real-key", id="bad-key"),
        pytest.param("Bearer ", id="empty-bearer"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-auth"),
        pytest.param("revoked", id="revoked-key"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", INVOCATIONS),
        ("post", COMPLETIONS),
        ("get", "/v1/models"),
        ("get", "/api/models/"),
        ("get", "/api/models/echo/versions/"),
    ],
)
def test_no_bad_or_revoked_key_is_a_401(client, db, header, method, path):
    if header == "revoked":
        header = f"Bearer {_revoked_key()}"
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    if method == "post":
        response = client.post(
            path, data=json.dumps(chat(model="echo")), content_type="application/json", **headers
        )
    else:
        response = client.get(path, **headers)

    error = error_of(response, 401)

    assert error["code"] == "invalid_api_key"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_key_stops_working_on_the_next_request(client, echo):
    api_key, raw = make_key(name="soon-revoked")
    assert post(client, INVOCATIONS, key=raw).status_code == 200

    services.revoke_api_key(key=api_key)

    assert error_of(post(client, INVOCATIONS, key=raw), 401)["code"] == "invalid_api_key"


def test_a_key_limited_to_another_model_gets_the_same_404_as_for_a_missing_model(client, echo):
    register(name="other", model=TriggerModel(), aliases=["prod"])
    raw = make_key(name="other-only", models=["other"])[1]
    missing = [
        post(client, "/api/models/nothing/invocations", key=raw),
        post(client, COMPLETIONS, chat(model="nothing"), key=raw),
        get(client, "/api/models/nothing/", key=raw),
        get(client, "/api/models/nothing/versions/", key=raw),
        get(client, "/api/models/nothing/versions/1/", key=raw),
        get(client, "/v1/models/nothing", key=raw),
    ]

    # Whatever version or alias is asked for, existing or not: no hint that `echo` exists.
    forbidden = [
        post(client, INVOCATIONS, key=raw),
        post(client, INVOCATIONS + "?version=9", key=raw),
        post(client, COMPLETIONS, chat(model="echo@prod"), key=raw),
        post(client, COMPLETIONS, chat(model="echo@nope"), key=raw),
        post(client, COMPLETIONS, chat(model="echo/9"), key=raw),
        get(client, "/api/models/echo/", key=raw),
        get(client, "/api/models/echo/versions/", key=raw),
        get(client, "/api/models/echo/versions/1/", key=raw),
        get(client, "/api/models/echo/versions/9/", key=raw),
        get(client, "/v1/models/echo", key=raw),
        get(client, "/v1/models/echo/9", key=raw),
        get(client, "/v1/models/echo@nope", key=raw),
    ]

    expected = error_of(missing[0], 404)
    assert expected["code"] == "model_not_found"
    for response in missing:
        assert error_of(response, 404) == expected
    body = {**expected, "message": expected["message"].replace("'nothing'", "'echo'")}
    for response in forbidden:
        assert error_of(response, 404) == body
    assert completion_text(post(client, COMPLETIONS, chat("hi", model="other"), key=raw)) == "hi"


def test_listings_show_a_limited_key_only_its_models(client, echo):
    register(name="other", model=TriggerModel(), aliases=["canary"])
    register(name="third", model=TriggerModel())
    raw = make_key(name="limited", models=["other", "third"])[1]

    models = get(client, "/api/models/", key=raw).json()
    openai_models = get(client, "/v1/models", key=raw).json()

    assert [model["name"] for model in models["results"]] == ["other", "third"]
    assert models["count"] == 2
    assert [model["id"] for model in openai_models["data"]] == ["other", "other@canary", "third"]


def test_anonymous_calls_need_the_setting(client, echo, settings):
    assert error_of(post(client, INVOCATIONS), 401)["code"] == "invalid_api_key"

    settings.CHATMODELS_ALLOW_ANONYMOUS = True

    assert completion_text(post(client, INVOCATIONS)) == "v2:hello"
    assert completion_text(post(client, COMPLETIONS, chat(model="echo@prod"))) == "v1:hello"
    assert [m["id"] for m in get(client, "/v1/models").json()["data"]] == ["echo", "echo@prod"]
    # A key that is sent is still checked.
    bad = post(client, INVOCATIONS, key="cm_wrong")
    assert error_of(bad, 401)["code"] == "invalid_api_key"
