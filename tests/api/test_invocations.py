"""The HTTP API as a client sees it: invocations, the OpenAI routes, streaming, every error."""

from __future__ import annotations

import json
import logging

import pytest

import chatmodels
from chatmodels import services
from tests.api.calls import completion_text, error_of, get, post, stream_events
from tests.helpers import chat, make_key, register
from tests.sample_models import (
    BadChunkStreamingModel,
    ContentPartsModel,
    LogprobsModel,
    ParamsReportModel,
    PartialUsageModel,
    StreamingModel,
    ToolCallingModel,
    TriggerModel,
)

pytestmark = pytest.mark.django_db

INVOCATIONS = "/api/models/echo/invocations"
COMPLETIONS = "/v1/chat/completions"


# --- completions: which version answers --------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "v2:hello"),
        ("?version=1", "v1:hello"),
        ("?version=2", "v2:hello"),
        ("?alias=prod", "v1:hello"),
    ],
)
def test_invocations_answer_with_latest_version_number_or_alias(client, echo, key, query, expected):
    response = post(client, INVOCATIONS + query, chat("hello"), key=key)

    assert completion_text(response) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("echo", "v2:hello"),
        ("echo/1", "v1:hello"),
        ("echo/2", "v2:hello"),
        ("echo@prod", "v1:hello"),
    ],
)
def test_chat_completions_take_name_version_or_alias_as_model(client, echo, key, model, expected):
    response = post(client, COMPLETIONS, chat("hello", model=model), key=key)

    assert completion_text(response) == expected
    assert response.json()["model"] == model


def test_completion_is_a_full_openai_chat_completion(client, echo, key):
    response = post(client, INVOCATIONS, chat("hello"), key=key)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) > len("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "echo"
    assert isinstance(body["created"], int)
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "v2:hello", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


def test_each_completion_has_its_own_id(client, echo, key):
    ids = {post(client, INVOCATIONS, key=key).json()["id"] for _ in range(3)}

    assert len(ids) == 3


def test_messages_and_params_reach_predict_as_typed_objects(client, key):
    register(name="report", model=ParamsReportModel())
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    body = {
        "model": "report",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        ],
        "temperature": 0.5,
        "max_tokens": 20,
        "stop": ["END"],
        "n": 1,
        "top_p": 0.9,
        "custom_inputs": {"session": "abc"},
        "tools": tools,
        "user": "someone",  # an OpenAI field beyond MLflow's: reaches the model too
    }

    response = post(client, COMPLETIONS, body, key=key)

    report = json.loads(completion_text(response))
    assert report["messages_type"] == "list"
    assert report["message_types"] == ["ChatMessage", "ChatMessage"]
    assert report["roles"] == ["system", "user"]
    assert report["contents"] == ["be brief", ["TextContentPart"]]
    assert report["params_type"] == "ChatParams"
    assert report["params_has_messages"] is False
    assert report["tool_types"] == ["ToolDefinition"]
    assert report["tool_function_types"] == ["FunctionToolDefinition"]
    assert report["tool_parameters_types"] == ["ToolParamsSchema"]
    params = report["params"]
    assert params["temperature"] == 0.5
    assert params["max_tokens"] == 20
    assert params["stop"] == ["END"]
    assert params["n"] == 1
    assert params["stream"] is False
    assert params["top_p"] == 0.9
    assert params["custom_inputs"] == {"session": "abc"}
    assert params["tools"][0]["function"]["name"] == "get_weather"
    assert params["user"] == "someone"
    assert "model" not in params and "model" not in params.get("extra", {})


def test_params_left_out_reach_predict_with_their_defaults(client, key):
    register(name="report", model=ParamsReportModel())

    response = post(client, "/api/models/report/invocations", chat("hi"), key=key)

    params = json.loads(completion_text(response))["params"]
    assert params == {"temperature": 1.0, "n": 1, "stream": False}


def test_max_completion_tokens_is_read_as_max_tokens(client, key):
    register(name="report", model=ParamsReportModel())

    response = post(
        client, "/api/models/report/invocations", chat("hi", max_completion_tokens=7), key=key
    )

    assert json.loads(completion_text(response))["params"]["max_tokens"] == 7


def test_tool_calls_come_back_in_the_openai_shape(client, key):
    register(name="tools", model=ToolCallingModel())

    response = post(client, COMPLETIONS, chat("Paris", model="tools"), key=key)

    assert response.status_code == 200
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_weather_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]


def test_logprobs_come_back_with_every_key_the_spec_requires(client, key):
    register(name="logprobs", model=LogprobsModel())

    response = post(client, COMPLETIONS, chat("hi", model="logprobs"), key=key)

    assert response.status_code == 200
    assert response.json()["choices"][0]["logprobs"] == {
        "content": [
            {
                "token": "hi",
                "logprob": -0.25,
                "bytes": None,
                "top_logprobs": [{"token": "hi", "logprob": -0.25, "bytes": None}],
            }
        ],
        "refusal": None,
    }


def test_alias_move_is_seen_by_the_very_next_request(client, echo, key):
    assert completion_text(post(client, INVOCATIONS + "?alias=prod", key=key)) == "v1:hello"
    assert completion_text(post(client, COMPLETIONS, chat(model="echo@prod"), key=key)) == (
        "v1:hello"
    )

    services.set_alias(name="echo", alias="prod", version=2)

    assert completion_text(post(client, INVOCATIONS + "?alias=prod", key=key)) == "v2:hello"
    assert completion_text(post(client, COMPLETIONS, chat(model="echo@prod"), key=key)) == (
        "v2:hello"
    )


def test_a_new_version_is_the_latest_at_once(client, echo, key):
    assert completion_text(post(client, INVOCATIONS, key=key)) == "v2:hello"

    register(name="echo", model=TriggerModel())

    assert completion_text(post(client, INVOCATIONS, key=key)) == "hello"


def test_content_type_is_not_required(client, echo, key):
    response = client.post(
        INVOCATIONS,
        data=json.dumps(chat("plain")),
        content_type="text/plain",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )

    assert completion_text(response) == "v2:plain"


# --- streaming ---------------------------------------------------------------------------------


def _chunks(events):
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks and all(isinstance(chunk, dict) for chunk in chunks)
    return chunks


def _content(chunks) -> str:
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


def test_stream_from_predict_stream_sends_chunks_then_done(client, key):
    register(name="streamer", model=StreamingModel())

    response = post(
        client, COMPLETIONS, chat("hello big world", model="streamer", stream=True), key=key
    )

    assert response.streaming
    assert response["Cache-Control"] == "no-cache"
    chunks = _chunks(stream_events(response))
    assert len(chunks) == 4  # three words, then the finish
    assert _content(chunks) == "hello big world "
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert {chunk["model"] for chunk in chunks} == {"streamer"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert len({chunk["created"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None, None, None, "stop"]
    assert all("usage" not in chunk for chunk in chunks)


def test_stream_of_a_model_without_predict_stream_is_one_chunk_of_predict(client, key):
    register(name="plain", model=TriggerModel())

    response = post(client, "/api/models/plain/invocations", chat("hi", stream=True), key=key)

    chunks = _chunks(stream_events(response))
    assert len(chunks) == 1
    (choice,) = chunks[0]["choices"]
    assert choice["delta"]["role"] == "assistant"
    assert choice["delta"]["content"] == "hi"
    assert choice["finish_reason"] == "stop"
    assert chunks[0]["model"] == "plain"


def test_stream_of_tool_calls_carries_indexed_tool_call_deltas(client, key):
    register(name="tools", model=ToolCallingModel())

    response = post(client, COMPLETIONS, chat("Oslo", model="tools", stream=True), key=key)

    (chunk,) = _chunks(stream_events(response))
    (choice,) = chunk["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["delta"]["tool_calls"] == [
        {
            "index": 0,
            "id": "call_weather_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        }
    ]


@pytest.mark.parametrize(
    ("model", "usage"),
    [
        (TriggerModel, {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
        # The model reported no usage: null, never made-up zeros.
        (StreamingModel, None),
    ],
)
def test_include_usage_adds_a_final_chunk_with_no_choices_and_the_usage(client, key, model, usage):
    register(name="m", model=model())
    body = chat("a b", model="m", stream=True, stream_options={"include_usage": True})

    chunks = _chunks(stream_events(post(client, COMPLETIONS, body, key=key)))

    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == usage
    assert chunks[-1]["id"] == chunks[0]["id"]
    assert all("usage" not in chunk for chunk in chunks[:-1])
    assert _content(chunks) in ("a b", "a b ")


@pytest.mark.parametrize("model", [ContentPartsModel, PartialUsageModel])
def test_usage_the_model_did_not_fully_report_is_left_out_not_made_up(client, key, model):
    register(name="m", model=model())

    completion = post(client, COMPLETIONS, chat("x", model="m"), key=key).json()
    body = chat("x", model="m", stream=True, stream_options={"include_usage": True})
    chunks = _chunks(stream_events(post(client, COMPLETIONS, body, key=key)))

    assert "usage" not in completion
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] is None


def test_include_usage_false_sends_no_usage_chunk(client, key):
    register(name="plain", model=TriggerModel())
    body = chat("x", model="plain", stream=True, stream_options={"include_usage": False})

    chunks = _chunks(stream_events(post(client, COMPLETIONS, body, key=key)))

    assert len(chunks) == 1 and chunks[0]["choices"]


def test_an_error_mid_stream_ends_it_with_an_error_event_and_no_done(client, key):
    register(name="streamer", model=StreamingModel())

    response = post(client, COMPLETIONS, chat("raise now", model="streamer", stream=True), key=key)

    events = stream_events(response)  # reads to the end: the stream is closed, not hung
    assert "[DONE]" not in events
    first, last = events[0], events[-1]
    assert first["choices"][0]["delta"]["content"] == "raise "
    assert set(last) == {"error"}
    assert last["error"]["type"] == "server_error"
    assert last["error"]["code"] == "model_error"
    assert set(last["error"]) == {"message", "type", "param", "code"}
    assert "stream broke" not in json.dumps(events)
    assert len(events) == 2


def test_an_invalid_chunk_mid_stream_ends_it_with_an_invalid_output_error_event(client, key):
    register(name="bad-stream", model=BadChunkStreamingModel())

    events = stream_events(
        post(client, COMPLETIONS, chat("x", model="bad-stream", stream=True), key=key)
    )

    assert "[DONE]" not in events
    assert events[0]["choices"][0]["delta"]["content"] == "ok "
    assert events[-1]["error"]["code"] == "invalid_model_output"
    assert events[-1]["error"]["type"] == "server_error"


def test_a_stream_that_fails_at_once_is_an_ordinary_error_response(client, key):
    register(name="plain", model=TriggerModel())

    raised = post(client, COMPLETIONS, chat("raise", model="plain", stream=True), key=key)
    garbage = post(client, COMPLETIONS, chat("garbage", model="plain", stream=True), key=key)

    assert error_of(raised, 500)["code"] == "model_error"
    assert error_of(garbage, 502)["code"] == "invalid_model_output"
    assert "secret internal detail" not in raised.content.decode()


def test_stream_options_of_the_wrong_type_is_a_400(client, key):
    register(name="plain", model=TriggerModel())
    body = chat(model="plain", stream=True, stream_options={"include_usage": "yes"})

    error = error_of(post(client, COMPLETIONS, body, key=key), 400)

    assert error["param"] == "stream_options.include_usage"


# --- bad requests: 400 naming the field --------------------------------------------------------

MALFORMED = [
    pytest.param(b'{"messages": [', "not valid JSON", id="malformed-json"),
    pytest.param(b"", "not valid JSON", id="empty-body"),
    pytest.param(b"[1, 2]", "must be a JSON object, got list", id="list-body"),
    pytest.param(b'"hello"', "must be a JSON object, got str", id="string-body"),
    pytest.param(b"null", "must be a JSON object", id="null-body"),
    pytest.param(b'\xff\xfe{"messages"', "not valid JSON", id="not-utf8"),
    pytest.param(b'{"n": 1' + b"0" * 5000 + b"}", "not valid JSON", id="huge-integer"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="deeply-nested"),
]


@pytest.mark.parametrize("path", [INVOCATIONS, COMPLETIONS])
@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_a_body_that_is_not_a_json_object_is_a_400(client, key, path, raw, message):
    error = error_of(post(client, path, key=key, raw=raw), 400)

    assert message in error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None


BAD_FIELDS = [
    pytest.param({"temperature": 1}, "messages", id="missing-messages"),
    pytest.param({"messages": []}, "messages", id="empty-messages"),
    pytest.param({"messages": "hi"}, "messages", id="messages-not-a-list"),
    pytest.param({"messages": ["hi"]}, "messages[0]", id="message-not-an-object"),
    pytest.param({"messages": [{"content": "hi"}]}, "messages[0].role", id="message-without-role"),
    pytest.param({"messages": [{"role": 3, "content": "hi"}]}, "messages[0].role", id="role-int"),
    pytest.param(
        {"messages": [{"role": "user", "content": 5}]}, "messages[0].content", id="content-int"
    ),
    pytest.param(chat(temperature="hot"), "temperature", id="temperature-string"),
    pytest.param(chat(temperature=True), "temperature", id="temperature-bool"),
    pytest.param(chat(temperature=-1), "temperature", id="temperature-negative"),
    pytest.param(chat(n="2"), "n", id="n-string"),
    pytest.param(chat(n=1.5), "n", id="n-float"),
    pytest.param(chat(n=0), "n", id="n-zero"),
    pytest.param(chat(max_tokens="10"), "max_tokens", id="max-tokens-string"),
    pytest.param(chat(max_tokens=2.5), "max_tokens", id="max-tokens-float"),
    pytest.param(chat(stop=5), "stop", id="stop-int"),
    pytest.param(chat(stop=["a", 1]), "stop", id="stop-list-with-int"),
    pytest.param(chat(tools="get_weather"), "tools", id="tools-string"),
    pytest.param(chat(tools=[{"type": "function"}]), "tools[0].function", id="tool-no-function"),
    pytest.param(chat(tools=[{"function": {"name": 3}}]), "tools[0].function.name", id="tool-name"),
    pytest.param(chat(stream="yes"), "stream", id="stream-string"),
    pytest.param(chat(top_p=2), "top_p", id="top-p-out-of-range"),
]


@pytest.mark.parametrize("path", [INVOCATIONS, COMPLETIONS])
@pytest.mark.parametrize(("body", "param"), BAD_FIELDS)
def test_a_request_that_breaks_the_signature_is_a_400_naming_the_field(
    client, key, path, body, param
):
    register(name="echo", model=TriggerModel())
    if path == COMPLETIONS:
        body = {**body, "model": "echo"}

    error = error_of(post(client, path, body, key=key), 400)

    assert error["param"] == param
    assert error["message"].startswith(param)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_value"


@pytest.mark.parametrize(
    ("model", "param"),
    [(None, "model"), ("", "model"), (3, "model"), ("echo/one", "model"), ("a/1/2", "model")],
)
def test_chat_completions_needs_a_well_formed_model(client, key, model, param):
    body = chat() if model is None else chat(model=model)

    error = error_of(post(client, COMPLETIONS, body, key=key), 400)

    assert error["param"] == param


@pytest.mark.parametrize(
    ("query", "param"),
    [("?version=abc", "version"), ("?version=0", "version"), ("?version=1&alias=prod", "version")],
)
def test_invocations_need_a_well_formed_version(client, echo, key, query, param):
    error = error_of(post(client, INVOCATIONS + query, key=key), 400)

    assert error["param"] == param


@pytest.mark.parametrize("path", [INVOCATIONS, COMPLETIONS])
def test_a_body_over_the_limit_is_a_413(client, echo, key, settings, path):
    settings.CHATMODELS_MAX_REQUEST_BYTES = 1000
    body = chat("x" * 2000, model="echo")

    error = error_of(post(client, path, body, key=key), 413)

    assert error["code"] == "request_too_large"
    assert "1000" in error["message"]
    # Under the limit, the same route answers.
    assert completion_text(post(client, path, chat("small", model="echo"), key=key)) == "v2:small"


# --- 404 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "code", "param"),
    [
        ("/api/models/nope/invocations", chat(), "model_not_found", "model"),
        (INVOCATIONS + "?version=9", chat(), "version_not_found", "version"),
        (INVOCATIONS + "?alias=nope", chat(), "alias_not_found", "alias"),
        (COMPLETIONS, chat(model="nope"), "model_not_found", "model"),
        (COMPLETIONS, chat(model="echo/9"), "version_not_found", "version"),
        (COMPLETIONS, chat(model="echo@nope"), "alias_not_found", "alias"),
        (COMPLETIONS, chat(model="nope@prod"), "model_not_found", "model"),
    ],
)
def test_unknown_model_version_or_alias_is_a_404(client, echo, key, path, body, code, param):
    error = error_of(post(client, path, body, key=key), 404)

    assert error["code"] == code
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_an_alias_of_another_model_is_not_found(client, echo, key):
    register(name="other", model=TriggerModel(), aliases=["canary"])

    error = error_of(post(client, COMPLETIONS, chat(model="echo@canary"), key=key), 404)

    assert error["code"] == "alias_not_found"


# --- 401 / 403 ---------------------------------------------------------------------------------


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


def test_a_key_limited_to_another_model_is_a_403(client, echo):
    register(name="other", model=TriggerModel(), aliases=["prod"])
    raw = make_key(name="other-only", models=["other"])[1]

    for response in (
        post(client, INVOCATIONS, key=raw),
        post(client, COMPLETIONS, chat(model="echo@prod"), key=raw),
        get(client, "/api/models/echo/", key=raw),
        get(client, "/api/models/echo/versions/", key=raw),
        get(client, "/api/models/echo/versions/1/", key=raw),
        get(client, "/v1/models/echo", key=raw),
    ):
        error = error_of(response, 403)
        assert error["type"] == "permission_error"
        assert error["code"] == "model_not_allowed"

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


# --- 429 ---------------------------------------------------------------------------------------


def test_throttling_answers_429_per_key(client, echo, key, settings):
    settings.CHATMODELS_THROTTLE_RATE = "2/min"
    other_key = make_key(name="other")[1]

    assert post(client, INVOCATIONS, key=key).status_code == 200
    assert post(client, COMPLETIONS, chat(model="echo"), key=key).status_code == 200
    throttled = post(client, INVOCATIONS, key=key)

    error = error_of(throttled, 429)
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"
    assert int(throttled["Retry-After"]) > 0
    # Another key has its own budget; health checks are never throttled.
    assert post(client, INVOCATIONS, key=other_key).status_code == 200
    assert client.get("/health").status_code == 200


# --- 500 / 502: the model misbehaves; the worker goes on ---------------------------------------


@pytest.fixture
def trigger(db):
    return register(name="trigger", model=TriggerModel())


@pytest.fixture
def chatmodels_log(caplog):
    """Records of the `chatmodels` loggers (which do not propagate to the root)."""
    logger = logging.getLogger("chatmodels")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.mark.parametrize("path", ["/api/models/trigger/invocations", COMPLETIONS])
def test_a_raising_model_is_a_500_that_leaks_nothing(client, trigger, key, chatmodels_log, path):
    response = post(client, path, chat("raise", model="trigger"), key=key)

    error = error_of(response, 500)
    assert error["type"] == "server_error"
    assert error["code"] == "model_error"
    text = response.content.decode()
    for secret in ("secret internal detail", "/etc/passwd", "Traceback", "RuntimeError", ".py"):
        assert secret not in text
    # The server log has it all, with the traceback.
    assert "secret internal detail" in chatmodels_log.text
    assert "Traceback (most recent call last)" in chatmodels_log.text

    assert completion_text(post(client, path, chat("again", model="trigger"), key=key)) == "again"


@pytest.mark.parametrize("path", ["/api/models/trigger/invocations", COMPLETIONS])
def test_a_garbage_returning_model_is_a_502_and_the_next_request_is_fine(
    client, trigger, key, path
):
    error = error_of(post(client, path, chat("garbage", model="trigger"), key=key), 502)

    assert error["type"] == "server_error"
    assert error["code"] == "invalid_model_output"
    assert "ChatResponse" in error["message"]

    assert completion_text(post(client, path, chat("again", model="trigger"), key=key)) == "again"


def test_a_model_whose_package_is_gone_is_a_500_that_leaks_no_path(client, echo, key):
    echo.package.storage.delete(echo.package.name)

    response = post(client, INVOCATIONS, key=key)

    error = error_of(response, 500)
    assert error["type"] == "server_error"
    assert echo.package.name not in response.content.decode()
    # The other version still answers.
    assert completion_text(post(client, INVOCATIONS + "?version=1", key=key)) == "v1:hello"


# --- Django's own errors, in the same shape ----------------------------------------------------


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


# --- registry listings -------------------------------------------------------------------------


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


# --- health ------------------------------------------------------------------------------------


def test_health_ready_and_version_need_no_key(client):
    health = client.get("/health")
    ready = client.get("/ready")
    version = client.get("/version")

    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}}
    assert version.status_code == 200
    assert version.json()["chatmodels"] == chatmodels.__version__
    assert {"python", "django"} <= set(version.json())


def test_every_response_carries_a_request_id(client, echo, key):
    given = client.get("/health", HTTP_X_REQUEST_ID="lb-123")
    made = post(client, INVOCATIONS, key=key)

    assert given["X-Request-ID"] == "lb-123"
    assert len(made["X-Request-ID"]) == 32
