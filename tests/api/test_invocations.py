"""Invocations as a client sees them: which version answers, the completion, every error."""

from __future__ import annotations

import json
import logging

import pytest

from chatmodels import services
from tests.api.calls import COMPLETIONS, INVOCATIONS, completion_text, error_of, post
from tests.helpers import chat, register
from tests.sample_models import (
    HistoryReportModel,
    LogprobsModel,
    ParamsReportModel,
    ToolCallingModel,
    TriggerModel,
)

pytestmark = pytest.mark.django_db


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


def _bad(body, param, *, id, code="invalid_value"):
    return pytest.param(body, param, code, id=id)


def chat_with(**message):
    """A request of one user message, with some of its keys replaced."""
    return {"messages": [{"role": "user", "content": "hi", **message}]}


BAD_FIELDS = [
    _bad({"temperature": 1}, "messages", id="missing-messages", code="missing_required_parameter"),
    _bad({"messages": []}, "messages", id="empty-messages", code="empty_array"),
    _bad({"messages": "hi"}, "messages", id="messages-not-a-list"),
    _bad({"messages": ["hi"]}, "messages[0]", id="message-not-an-object"),
    _bad(
        {"messages": [{"content": "hi"}]},
        "messages[0].role",
        id="message-without-role",
        code="missing_required_parameter",
    ),
    _bad({"messages": [{"role": 3, "content": "hi"}]}, "messages[0].role", id="role-int"),
    _bad({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", id="content-int"),
    _bad(chat(temperature="hot"), "temperature", id="temperature-string"),
    _bad(chat(temperature=True), "temperature", id="temperature-bool"),
    _bad(chat(temperature=-1), "temperature", id="temperature-negative"),
    _bad(chat(n="2"), "n", id="n-string"),
    _bad(chat(n=1.5), "n", id="n-float"),
    _bad(chat(n=0), "n", id="n-zero"),
    _bad(chat(max_tokens="10"), "max_tokens", id="max-tokens-string"),
    _bad(chat(max_tokens=2.5), "max_tokens", id="max-tokens-float"),
    _bad(chat(stop=5), "stop", id="stop-int"),
    _bad(chat(stop=["a", 1]), "stop[1]", id="stop-list-with-int"),
    _bad(chat(tools="get_weather"), "tools", id="tools-string"),
    _bad(
        chat(tools=[{"type": "function"}]),
        "tools[0].function",
        id="tool-no-function",
        code="missing_required_parameter",
    ),
    _bad(chat(tools=[{"function": {"name": 3}}]), "tools[0].function.name", id="tool-name"),
    _bad(chat(stream="yes"), "stream", id="stream-string"),
    _bad(chat(top_p=2), "top_p", id="top-p-out-of-range"),
    # The OpenAI API's own limits and rules (its OpenAPI document), as OpenAI answers them.
    _bad(chat_with(role="robot"), "messages[0].role", id="role-unknown"),
    _bad(chat_with(role=""), "messages[0].role", id="role-empty"),
    _bad(chat_with(role="root"), "messages[0].role", id="role-root"),
    _bad(
        {"messages": [*chat("hi")["messages"], {"role": "tool", "content": "42"}]},
        "messages[1].tool_call_id",
        id="tool-message-without-tool-call-id",
        code="missing_required_parameter",
    ),
    _bad(chat_with(content=[]), "messages[0].content", id="content-empty", code="empty_array"),
    _bad(chat(n=10**20), "n", id="n-huge"),
    _bad(chat(n=129), "n", id="n-past-128"),
    _bad(chat(temperature=1e308), "temperature", id="temperature-huge"),
    _bad(chat(temperature=3), "temperature", id="temperature-past-2"),
    _bad(chat(frequency_penalty=5), "frequency_penalty", id="frequency-penalty-past-2"),
    _bad(chat(presence_penalty=-2.5), "presence_penalty", id="presence-penalty-below-minus-2"),
    _bad(chat(stop=["a", "b", "c", "d", "e"]), "stop", id="stop-five-entries"),
    _bad(chat(stop=[]), "stop", id="stop-empty", code="empty_array"),
    _bad(chat(top_logprobs=21, logprobs=True), "top_logprobs", id="top-logprobs-past-20"),
    _bad(chat(top_logprobs=2), "top_logprobs", id="top-logprobs-without-logprobs"),
    _bad(chat(seed=2**63), "seed", id="seed-past-64-bits"),
    _bad(
        chat(tool_choice={"type": "function", "function": {"name": "nowhere"}}),
        "tool_choice",
        id="tool-choice-naming-a-missing-tool",
    ),
    _bad(chat(tool_choice="sometimes"), "tool_choice", id="tool-choice-unknown-mode"),
    _bad(chat(response_format={"type": "yaml"}), "response_format.type", id="format-yaml"),
    _bad(
        chat(response_format={"type": "json_schema"}),
        "response_format.json_schema",
        id="format-json-schema-without-json-schema",
        code="missing_required_parameter",
    ),
    _bad(
        chat(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
        "response_format.json_schema.name",
        id="format-json-schema-without-name",
        code="missing_required_parameter",
    ),
    _bad(
        chat(stream_options={"include_usage": True}),
        "stream_options",
        id="stream-options-without-stream",
    ),
]


@pytest.mark.parametrize("path", [INVOCATIONS, COMPLETIONS])
@pytest.mark.parametrize(("body", "param", "code"), BAD_FIELDS)
def test_a_request_that_breaks_the_signature_is_a_400_naming_the_field(
    client, key, path, body, param, code
):
    register(name="echo", model=TriggerModel())
    if path == COMPLETIONS:
        body = {**body, "model": "echo"}

    error = error_of(post(client, path, body, key=key), 400)

    assert error["param"] == param
    assert error["message"].startswith(param)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code


# --- what OpenAI's spec allows is accepted ------------------------------------------------------


def test_whole_number_floats_are_integers_as_json_schema_counts_them(client, key):
    register(name="report", model=ParamsReportModel())
    body = chat("hi", n=1.0, seed=0.0, max_tokens=16.0, top_logprobs=2.0, logprobs=True)

    params = json.loads(
        completion_text(post(client, "/api/models/report/invocations", body, key=key))
    )

    assert params["params"]["n"] == 1 and params["params"]["seed"] == 0
    assert params["params"]["max_tokens"] == 16 and params["params"]["top_logprobs"] == 2
    assert all(
        type(params["params"][name]) is int for name in ("n", "seed", "max_tokens", "top_logprobs")
    )


def test_unknown_top_level_keys_still_reach_the_model_in_extra(client, key):
    register(name="report", model=ParamsReportModel())
    body = chat("hi", vendor_knob={"depth": 3}, stream_options=None)

    params = json.loads(
        completion_text(post(client, "/api/models/report/invocations", body, key=key))
    )

    assert params["params"]["extra"] == {"vendor_knob": {"depth": 3}}


def test_legacy_function_call_and_custom_tool_calls_in_the_history_are_accepted(client, key):
    register(name="history", model=HistoryReportModel())
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
    ]

    response = post(client, COMPLETIONS, {"model": "history", "messages": messages}, key=key)

    seen = json.loads(completion_text(response))
    assert [message["role"] for message in seen] == [
        "user",
        "assistant",
        "function",
        "assistant",
        "tool",
    ]
    (legacy,) = seen[1]["tool_calls"]
    assert legacy["type"] == "function"
    assert legacy["function"] == {"name": "get_weather", "arguments": "{}"}
    (custom,) = seen[3]["tool_calls"]
    assert custom == {
        "id": "call_1",
        "type": "custom",
        "function": {"name": "sql", "arguments": "SELECT 1"},
    }


def test_a_custom_tool_call_without_its_input_is_a_400_naming_it(client, key):
    register(name="history", model=HistoryReportModel())
    call = {"id": "call_1", "type": "custom", "custom": {"name": "sql"}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [call]},
    ]

    error = error_of(
        post(client, COMPLETIONS, {"model": "history", "messages": messages}, key=key), 400
    )

    assert error["param"] == "messages[1].tool_calls[0].custom.input"
    assert error["code"] == "missing_required_parameter"


def test_a_tool_choice_naming_a_given_tool_is_accepted(client, key):
    register(name="weather", model=ToolCallingModel())
    tool = {"type": "function", "function": {"name": "get_weather"}}
    body = chat(
        "Paris", tools=[tool], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )

    response = post(client, "/api/models/weather/invocations", body, key=key)

    assert response.status_code == 200, response.content


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
        ("/api/models/nope/invocations", chat(), "model_not_found", None),  # as OpenAI: no param
        (INVOCATIONS + "?version=9", chat(), "version_not_found", "version"),
        (INVOCATIONS + "?alias=nope", chat(), "alias_not_found", "alias"),
        (COMPLETIONS, chat(model="nope"), "model_not_found", None),  # as OpenAI: no param
        (COMPLETIONS, chat(model="echo/9"), "version_not_found", "version"),
        (COMPLETIONS, chat(model="echo@nope"), "alias_not_found", "alias"),
        (COMPLETIONS, chat(model="nope@prod"), "model_not_found", None),  # as OpenAI: no param
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


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("other", "this URL serves 'echo', the body names 'other'"),
        ("echo/1", "a version or alias goes in the query string here"),
    ],
)
def test_invocations_refuse_a_body_that_names_another_model(client, key, model, fragment):
    register(name="echo", model=TriggerModel())

    error = error_of(post(client, INVOCATIONS, chat("hi", model=model), key=key), 400)

    assert error["param"] == "model"
    assert fragment in error["message"]


def test_invocations_take_a_body_that_names_their_own_model(client, key):
    register(name="echo", model=TriggerModel())

    assert completion_text(post(client, INVOCATIONS, chat("hi", model="echo"), key=key)) == "hi"
