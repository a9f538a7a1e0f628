"""Our OpenAPI schema tells the truth: every error a route answers, request shapes, examples.

Errors are generated from the exception classes (status, OpenAI type and code on each class):
these tests hold the schema, the handler and docs/api.md to the same facts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from rest_framework import exceptions as drf

from chatmodels import exceptions
from chatmodels.api import errors
from chatmodels.exceptions import ChatModelsError
from chatmodels.serving.errors import error_response
from examples.echo import EchoModel
from tests.api.calls import error_of, get, post
from tests.helpers import chat, make_key, register

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
CHATS = ("/api/models/{name}/invocations", "/v1/chat/completions")


@pytest.fixture
def document(client) -> dict[str, Any]:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def _operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _documented(document: dict[str, Any], path: str) -> set[int]:
    (operation,) = document["paths"][path].values()
    return {int(status) for status in operation["responses"]}


# --- errors: one fact, one place ---------------------------------------------------------------


def test_each_route_documents_every_status_it_can_answer(document):
    # 400 and 404: a `?page=` that is not a page number, a page past the last. No 403 for a
    # model a key may not call: it is a 404, as for a model that does not exist.
    assert _documented(document, "/api/models/") == {200, 400, 401, 404, 429}
    assert _documented(document, "/api/models/{name}/versions/") == {200, 400, 401, 404, 429}
    assert _documented(document, "/api/models/{name}/") == {200, 401, 404, 429}
    assert _documented(document, "/v1/models") == {200, 401, 429}
    for path in CHATS:
        assert _documented(document, path) == {
            200, 400, 401, 404, 413, 429, 500, 502, 503, 504
        }, path  # fmt: skip
    assert _documented(document, "/v1/models/{model}") == {200, 400, 401, 404, 429}
    assert _documented(document, "/ready") == {200, 503}
    assert _documented(document, "/health") == {200}
    assert _documented(document, "/api/usage/") == {200, 400, 401, 403, 404, 429}
    assert _documented(document, "/metrics") == {200, 401, 403, 404}
    assert _documented(document, "/v1/responses") == _documented(document, "/v1/chat/completions")


def test_security_says_when_a_call_needs_no_key(client, settings):
    def security(path: str) -> list:
        document = json.loads(client.get("/api/schema/", {"format": "json"}).content)
        (operation,) = document["paths"][path].values()
        return operation["security"]

    assert security("/v1/chat/completions") == [{"ApiKey": []}]
    assert security("/metrics") == [{"ApiKey": []}, {}]  # open from the server's own host
    assert security("/health") == [{}]
    settings.CHATMODELS_ALLOW_ANONYMOUS = True
    assert security("/v1/chat/completions") == [{"ApiKey": []}, {}]


def test_error_responses_are_openai_error_objects_with_their_codes(document):
    invocations = document["paths"]["/api/models/{name}/invocations"]["post"]["responses"]
    schemas = document["components"]["schemas"]

    not_found = invocations["404"]["content"]["application/json"]
    assert not_found["schema"]["allOf"] == [{"$ref": "#/components/schemas/ErrorResponse"}]
    codes = not_found["schema"]["properties"]["error"]["properties"]["code"]["enum"]
    assert set(codes) == {"not_found", "model_not_found", "version_not_found", "alias_not_found"}
    assert "`alias_not_found`" in invocations["404"]["description"]
    busy = invocations["503"]["content"]["application/json"]["schema"]
    assert busy["properties"]["error"]["properties"]["code"]["enum"] == [
        "server_busy",
        "limits_unavailable",
    ]
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert set(schemas["ErrorResponse"]["properties"]["error"]["required"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    for path, method, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                example = response["content"]["application/json"]["example"]
                Draft202012Validator(schemas["ErrorResponse"]).validate(example)
                assert example["error"]["code"], (path, method, status)


def test_the_docs_error_table_matches_the_exception_classes():
    table = re.findall(r"^\| (\d{3}) \| .* \| `(\w+)` / (.+) \|$", DOCS.read_text(), re.M)
    classes = _all_error_classes()
    assert len(table) >= 12
    for status, error_type, codes in table:
        for code in re.findall(r"`(\w+)`", codes):
            assert any(
                (cls.status_code, cls.type, cls.code) == (int(status), error_type, code)
                for cls in classes
            ), (status, error_type, code)


def _all_error_classes() -> list[type[ChatModelsError]]:
    return [
        value
        for value in vars(exceptions).values()
        if isinstance(value, type) and issubclass(value, ChatModelsError)
    ]


def test_drf_errors_answer_drf_status_with_our_type_and_code():
    for drf_error in (
        drf.NotAuthenticated(),
        drf.AuthenticationFailed(),
        drf.PermissionDenied(),
        drf.NotFound(),
        drf.MethodNotAllowed("PATCH"),
        drf.NotAcceptable(),
        drf.UnsupportedMediaType("text/plain"),
        drf.Throttled(wait=3),
        drf.ParseError(),
        drf.ValidationError({"field": ["wrong"]}),
        drf.APIException(),
    ):
        ours = errors.from_drf(drf_error)
        assert ours.status_code == drf_error.status_code, drf_error
        assert ours.message


def test_an_error_without_its_own_status_is_a_500_server_error():
    response = error_response(exceptions.PackageIntegrityError("digest mismatch"))

    assert response.status_code == 500
    assert json.loads(response.content)["error"] == {
        "message": "digest mismatch",
        "type": "server_error",
        "param": None,
        "code": None,
    }


def test_server_busy_keeps_its_retry_after_header():
    response = error_response(exceptions.ServerBusy("full", retry_after=7))

    assert response.status_code == 503
    assert response["Retry-After"] == "7"
    assert json.loads(response.content)["error"]["code"] == "server_busy"


# --- request schemas say what the server accepts -----------------------------------------------


def test_chat_completions_requires_model_and_version_numbers_start_at_one(document):
    paths = document["paths"]
    completions = paths["/v1/chat/completions"]["post"]["requestBody"]
    invocations = paths["/api/models/{name}/invocations"]["post"]
    version = paths["/api/models/{name}/versions/{version}/"]["get"]

    assert completions["required"] is True
    assert completions["content"]["application/json"]["schema"]["required"] == [
        "model",
        "messages",
    ]
    query_version = next(p for p in invocations["parameters"] if p["name"] == "version")
    path_version = next(p for p in version["parameters"] if p["name"] == "version")
    for parameter in (query_version, path_version):
        assert parameter["schema"]["type"] == "integer"
        assert parameter["schema"]["minimum"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["page=", "page=abc", "page=0", "page=-1", "page=%C2%B2"])
def test_a_page_that_is_not_a_page_number_is_a_400(client, query):
    key = make_key()[1]

    error = error_of(get(client, f"/api/models/?{query}", key=key), 400)

    assert error["param"] == "page"
    assert error["message"].startswith("page:")


@pytest.mark.django_db
def test_a_page_past_the_last_is_still_a_404(client):
    key = make_key()[1]

    assert error_of(get(client, "/api/models/?page=2", key=key), 404)["code"] == "not_found"


@pytest.mark.django_db
def test_stream_options_are_checked_even_without_stream(client):
    register(name="echo", model=EchoModel())
    key = make_key()[1]
    body = chat("hi", model="echo", stream_options={"include_usage": {}})

    error = error_of(post(client, "/v1/chat/completions", body, key=key), 400)

    assert error["param"] == "stream_options.include_usage"


@pytest.mark.django_db
def test_a_content_part_whose_type_is_not_a_string_is_a_400(client):
    register(name="echo", model=EchoModel())
    key = make_key()[1]
    body = {"model": "echo", "messages": [{"role": "user", "content": [{"type": {}}]}]}

    error = error_of(post(client, "/v1/chat/completions", body, key=key), 400)

    assert error["param"] == "messages[0].content[0].type"


# --- Swagger's "Try it out" works as it is -----------------------------------------------------


def _example_url(path: str, operation: dict[str, Any], stored: dict[str, str]) -> str:
    for parameter in operation.get("parameters", ()):
        if parameter["in"] == "path":
            (example,) = parameter["examples"].values()
            value = stored.get(parameter["name"], example["value"])
            path = path.replace("{" + parameter["name"] + "}", str(value))
    return path


def _stored_ids(client, key: str) -> dict[str, str]:
    """Ids of a stored response, a conversation and its item: what a client made before it
    can read them (no example id can name them in advance)."""
    response = post(client, "/v1/responses", {"model": "echo", "input": "hi"}, key=key).json()
    conversation = post(
        client, "/v1/conversations", {"items": [{"role": "user", "content": "hi"}]}, key=key
    ).json()
    items = get(client, f"/v1/conversations/{conversation['id']}/items", key=key).json()
    return {
        "response_id": response["id"],
        "conversation_id": conversation["id"],
        "item_id": items["data"][0]["id"],
    }


@pytest.mark.django_db
def test_every_example_in_the_schema_works_as_it_is(client, document):
    register(name="echo", model=EchoModel())
    key = make_key()[1]
    stored = _stored_ids(client, key)
    tried = 0
    for path, _method, operation in _operations(document):
        url = _example_url(path, operation, stored)
        content = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            assert get(client, url, key=key).status_code == 200, url
            continue
        assert content["examples"], path  # no `"string"` placeholders for Swagger to fill in
        for example in content["examples"].values():
            Draft202012Validator(content["schema"]).validate(example["value"])
            response = post(client, url, example["value"], key=key)
            assert response.status_code == 200, (url, response.content)
            tried += 1
    # Two examples each: invocations, chat completions, responses; one each: create a
    # conversation, change its metadata, add items to it.
    assert tried == 9


@pytest.mark.django_db
@pytest.mark.parametrize("version", ["0", "2147483648", "83668241316744632729600", "%C2%B2"])
def test_a_version_that_no_version_can_have_is_a_400(client, version):
    register(name="echo", model=EchoModel())
    key = make_key()[1]

    response = post(client, f"/api/models/echo/invocations?version={version}", chat(), key=key)

    assert error_of(response, 400)["param"] == "version"


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["until=", "since=", "model=", "bucket="])
def test_an_empty_usage_parameter_is_a_bad_value_not_a_missing_one(client, query):
    key = make_key()[1]

    error = error_of(get(client, f"/api/usage/?{query}", key=key), 400)

    assert error["message"].startswith(query.rstrip("=") + ":")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "param"),
    [({"store": {}}, "store"), ({"tools": [{"type": {}}]}, "tools[0].type")],
)
def test_responses_refuses_what_its_schema_refuses(client, extra, param):
    register(name="echo", model=EchoModel())
    key = make_key()[1]
    body = {"model": "echo", "input": "Hello!", **extra}

    assert error_of(post(client, "/v1/responses", body, key=key), 400)["param"] == param
