"""Real responses validated against OpenAI's own OpenAPI document, and our schema and docs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client
from jsonschema.validators import extend
from openapi_schema_validator import OAS30Validator, OAS31Validator
from openapi_spec_validator import validate as validate_openapi_document
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

from chatmodels import services
from tests.api.calls import get, post, stream_events
from tests.helpers import chat, make_key, register
from tests.sample_models import (
    BadChunkStreamingModel,
    ContentPartsModel,
    LogprobsModel,
    StreamingModel,
    ToolCallingModel,
    TriggerModel,
)

pytestmark = pytest.mark.django_db

# OpenAI's own document, carried by the repository (tests/openai/README.md says where from).
SPEC_PATH = Path(__file__).resolve().parents[1] / "openai" / "openapi.yaml"
SPEC_URI = "urn:openai:openapi.yaml"
COMPLETIONS = "/v1/chat/completions"


def _nullable_aware(check):
    """OpenAI's 3.1 document still marks some fields OAS 3.0-style (`nullable: true`, e.g. a
    stream chunk's `finish_reason`, or its `usage` beside a `$ref`); JSON Schema 2020-12 ignores
    that keyword, so a 3.1 validator would refuse the `null` that OpenAI itself sends. Honour
    it as OpenAI means it."""

    def keyword(validator, value, instance, schema):
        if instance is None and schema.get("nullable") is True:
            return
        yield from check(validator, value, instance, schema)

    return keyword


def _describe(error) -> str:
    # For anyOf/oneOf, report the failure that got deepest into the instance: the real culprit.
    while error.context:
        error = max(error.context, key=lambda branch: len(branch.absolute_path))
    path = "/".join(str(part) for part in error.absolute_path) or "(top)"
    return f"- at {path}: {error.message}"


@pytest.fixture(scope="session")
def openai_spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open(encoding="utf-8") as spec_file:
        return yaml.load(spec_file, Loader=loader)


@pytest.fixture(scope="session")
def assert_matches(openai_spec):
    """assert_matches(instance, "SchemaName"): the instance validates against that component,
    with every `$ref` resolved in the whole OpenAI document."""
    if str(openai_spec["openapi"]).startswith("3.0"):
        base, specification = OAS30Validator, DRAFT4
    else:
        base, specification = OAS31Validator, DRAFT202012
    validator_class = base
    if specification is DRAFT202012:
        validator_class = extend(
            base,
            validators={
                "type": _nullable_aware(base.VALIDATORS["type"]),
                "enum": _nullable_aware(base.VALIDATORS["enum"]),
                "$ref": _nullable_aware(base.VALIDATORS["$ref"]),
            },
        )
    registry = Registry().with_resource(
        SPEC_URI, Resource.from_contents(openai_spec, default_specification=specification)
    )

    def check(instance: Any, schema_name: str) -> None:
        assert schema_name in openai_spec["components"]["schemas"]
        validator = validator_class(
            {"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"},
            registry=registry,
            format_checker=base.FORMAT_CHECKER,
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.path])
        assert not errors, (
            f"not a valid {schema_name}:\n"
            + "\n".join(_describe(error) for error in errors)
            + "\n"
            + json.dumps(instance, indent=1)[:3000]
        )

    return check


def test_the_validator_is_not_vacuous(assert_matches):
    valid = {"error": {"message": "m", "type": "t", "param": None, "code": None}}
    assert_matches(valid, "ErrorResponse")

    for wrong, schema in (
        ({"error": {"message": "m"}}, "ErrorResponse"),
        ({"object": "list", "data": [{"id": 1}]}, "ListModelsResponse"),
        ({"id": "x", "object": "chat.completion", "choices": []}, "CreateChatCompletionResponse"),
        (
            {
                "id": "x",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "user"}}],
            },
            "CreateChatCompletionResponse",
        ),
    ):
        with pytest.raises(AssertionError, match="not a valid"):
            assert_matches(wrong, schema)


# --- chat.completion ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "text"),
    [
        pytest.param(TriggerModel, "hello", id="plain-with-usage"),
        pytest.param(ToolCallingModel, "Paris", id="tool-calls"),
        pytest.param(LogprobsModel, "hi", id="logprobs"),
        pytest.param(ContentPartsModel, "hi", id="content-parts-no-usage"),
        pytest.param(StreamingModel, "a b", id="streaming-model-not-streamed"),
    ],
)
@pytest.mark.parametrize("path", ["/api/models/m/invocations", COMPLETIONS])
def test_completions_match_create_chat_completion_response(
    client: Client, key, assert_matches, model, text, path
):
    register(name="m", model=model())

    response = post(client, path, chat(text, model="m"), key=key)

    assert response.status_code == 200, response.content
    assert_matches(response.json(), "CreateChatCompletionResponse")


def test_completion_with_every_sampling_param_matches_the_spec(client, key, assert_matches):
    register(name="m", model=TriggerModel(), aliases=["prod"])
    body = chat(
        "x",
        model="m@prod",
        temperature=0.2,
        max_tokens=5,
        stop="\n",
        n=1,
        top_p=0.5,
        presence_penalty=0.1,
        frequency_penalty=0.1,
        user="u",
        seed=3,
    )

    response = post(client, COMPLETIONS, body, key=key)

    assert response.status_code == 200, response.content
    assert_matches(response.json(), "CreateChatCompletionResponse")


# --- chat.completion.chunk ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [StreamingModel, TriggerModel, ToolCallingModel, LogprobsModel, ContentPartsModel],
    ids=lambda model: model.__name__,
)
@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "usage"])
def test_every_stream_chunk_matches_create_chat_completion_stream_response(
    client, key, assert_matches, model, include_usage
):
    register(name="m", model=model())
    body = chat("hello world", model="m", stream=True)
    if include_usage:
        body["stream_options"] = {"include_usage": True}

    events = stream_events(post(client, COMPLETIONS, body, key=key))

    assert events[-1] == "[DONE]"
    for chunk in events[:-1]:
        assert_matches(chunk, "CreateChatCompletionStreamResponse")
    if include_usage:
        assert events[-2]["choices"] == [] and "usage" in events[-2]


@pytest.mark.parametrize(
    ("model", "text"),
    [(StreamingModel, "raise now"), (BadChunkStreamingModel, "x")],
    ids=["raised", "invalid-chunk"],
)
def test_a_failed_stream_has_spec_chunks_then_an_error_response_event(
    client, key, assert_matches, model, text
):
    register(name="m", model=model())

    events = stream_events(post(client, COMPLETIONS, chat(text, model="m", stream=True), key=key))

    *chunks, error = events
    assert chunks
    for chunk in chunks:
        assert_matches(chunk, "CreateChatCompletionStreamResponse")
    assert_matches(error, "ErrorResponse")


# --- models ------------------------------------------------------------------------------------


def test_model_list_matches_list_models_response(client, key, assert_matches):
    register(name="alpha", model=TriggerModel(), aliases=["prod", "canary"])
    register(name="beta", model=TriggerModel())

    response = get(client, "/v1/models", key=key)

    assert response.status_code == 200
    assert_matches(response.json(), "ListModelsResponse")
    assert len(response.json()["data"]) == 4


@pytest.mark.parametrize("reference", ["alpha", "alpha/1", "alpha@prod"])
def test_one_model_matches_model(client, key, assert_matches, reference):
    register(name="alpha", model=TriggerModel(), aliases=["prod"])

    response = get(client, f"/v1/models/{reference}", key=key)

    assert response.status_code == 200
    assert_matches(response.json(), "Model")


# --- errors ------------------------------------------------------------------------------------


def _error_responses(client: Client, key: str, settings) -> dict[str, Any]:
    """One response for every error status the API answers."""
    register(name="trigger", model=TriggerModel(), aliases=["prod"])
    register(name="other", model=TriggerModel())
    other = make_key(name="other-only", models=["other"])
    revoked_key, revoked = make_key(name="revoked")
    services.revoke_api_key(key=revoked_key)
    invocations = "/api/models/trigger/invocations"
    responses = {
        "400 malformed json": post(client, invocations, key=key, raw=b"{nope"),
        "400 non-object body": post(client, invocations, key=key, raw=b"[]"),
        "400 missing messages": post(client, invocations, {"n": 1}, key=key),
        "400 wrong type": post(client, COMPLETIONS, chat(model="trigger", n="2"), key=key),
        "400 no model": post(client, COMPLETIONS, chat(), key=key),
        "401 no key": post(client, invocations),
        "401 bad key": post(client, invocations, key="cm_bad"),
        "401 revoked key": post(client, invocations, key=revoked),
        "404 unknown model": post(client, COMPLETIONS, chat(model="nope"), key=key),
        "404 unknown version": post(client, COMPLETIONS, chat(model="trigger/7"), key=key),
        "404 unknown alias": post(client, COMPLETIONS, chat(model="trigger@x"), key=key),
        "404 unknown url": client.get("/nowhere"),
        "405 wrong method": get(client, COMPLETIONS, key=key),
        "500 model raised": post(client, invocations, chat("raise"), key=key),
        "502 model garbage": post(client, invocations, chat("garbage"), key=key),
    }
    # A scoped key is told a model it may not call does not exist.
    responses["404 key for another model"] = post(client, invocations, key=other[1])
    settings.CHATMODELS_MAX_REQUEST_BYTES = 200
    responses["413 too large"] = post(client, invocations, chat("x" * 500), key=key)
    settings.CHATMODELS_MAX_REQUEST_BYTES = 1024 * 1024
    settings.CHATMODELS_THROTTLE_RATE = "1/min"
    post(client, invocations, key=key)
    responses["429 throttled"] = post(client, invocations, key=key)
    return responses


def test_every_error_matches_error_response(client, key, settings, assert_matches):
    responses = _error_responses(client, key, settings)

    statuses = set()
    for label, response in responses.items():
        status = int(label.split()[0])
        assert response.status_code == status, (label, response.content)
        assert response["Content-Type"].startswith("application/json"), label
        assert_matches(response.json(), "ErrorResponse")
        statuses.add(status)
    assert statuses == {400, 401, 404, 405, 413, 429, 500, 502}


# --- our own OpenAPI schema and docs -----------------------------------------------------------


def test_our_schema_is_a_valid_openapi_document(client):
    response = client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    document = json.loads(response.content)
    validate_openapi_document(document)
    paths = document["paths"]
    for path in (
        "/api/models/",
        "/api/models/{name}/",
        "/api/models/{name}/invocations",
        "/api/models/{name}/versions/",
        "/api/models/{name}/versions/{version}/",
        "/v1/chat/completions",
        "/v1/models",
        "/health",
        "/ready",
        "/version",
    ):
        assert path in paths, path


def test_our_schema_describes_the_real_chat_shapes(client):
    document = json.loads(client.get("/api/schema/", {"format": "json"}).content)
    operation = document["paths"]["/v1/chat/completions"]["post"]

    request = operation["requestBody"]["content"]["application/json"]["schema"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    error = operation["responses"]["404"]["content"]["application/json"]["schema"]
    assert {"model", "messages", "temperature", "stream", "tools"} <= set(request["properties"])
    assert "messages" in request["required"]
    assert "choices" in answer["properties"]
    assert error["required"] == ["error"]
    for status in ("400", "401", "404", "413", "429", "500", "502", "503"):
        assert status in operation["responses"], status
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_the_docs_page_renders_without_a_key(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger" in response.content.lower()
    assert b"/api/schema/" in response.content
