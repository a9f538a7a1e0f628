"""The official `openai` SDK, unchanged, against a live server: what an application sees."""

from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI

from chatmodels import services
from tests.helpers import make_key, register
from tests.sample_models import (
    ParamsReportModel,
    PrefixModel,
    StreamingModel,
    ToolCallingModel,
    TriggerModel,
)

# live_server serves from another thread: the data must be committed to be seen.
pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def sdk(live_server):
    """sdk(api_key): an OpenAI client of the live server, closed after the test (an open
    keep-alive connection would hold a server thread, and its database connection, open)."""
    clients = []

    def make(api_key: str) -> OpenAI:
        client = OpenAI(
            base_url=live_server.url + "/v1", api_key=api_key, max_retries=0, timeout=20
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def registry(db):
    """echo/1 (alias prod) and echo/2 (the latest); tests register any other model they use."""
    register(name="echo", model=PrefixModel("v1:"), aliases=["prod"])
    register(name="echo", model=PrefixModel("v2:"))


@pytest.fixture
def streamer(registry):
    register(name="streamer", model=StreamingModel())


@pytest.fixture
def trigger(registry):
    register(name="trigger", model=TriggerModel())


@pytest.fixture
def tools(registry):
    register(name="tools", model=ToolCallingModel())


@pytest.fixture
def client(sdk, registry) -> OpenAI:
    return sdk(make_key(name="sdk")[1])


@pytest.mark.parametrize(
    ("model", "text"), [("echo", "v2:hello"), ("echo/1", "v1:hello"), ("echo@prod", "v1:hello")]
)
def test_create_a_completion(client, model, text):
    completion = client.chat.completions.create(model=model, messages=HELLO)

    assert completion.choices[0].message.content == text
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == model
    assert completion.usage.total_tokens == 2


def test_sdk_params_reach_predict_as_typed_params(client):
    register(name="report", model=ParamsReportModel())

    completion = client.chat.completions.create(
        model="report",
        messages=[{"role": "system", "content": "be brief"}, *HELLO],
        temperature=0.1,
        max_completion_tokens=5,
        stop=["\n"],
        top_p=0.5,
        extra_body={"custom_inputs": {"session": "s1"}},
    )

    report = json.loads(completion.choices[0].message.content)
    assert report["message_types"] == ["ChatMessage", "ChatMessage"]
    assert report["params_type"] == "ChatParams"
    assert report["params"] == {
        "temperature": 0.1,
        "max_tokens": 5,  # read from max_completion_tokens
        "max_completion_tokens": 5,
        "stop": ["\n"],
        "n": 1,
        "stream": False,
        "top_p": 0.5,
        "custom_inputs": {"session": "s1"},
    }


def _reply(client: OpenAI, model: str) -> str:
    return client.chat.completions.create(model=model, messages=HELLO).choices[0].message.content


def test_an_alias_move_is_seen_by_the_next_sdk_call(client):
    assert _reply(client, "echo@prod") == "v1:hello"

    services.set_alias(name="echo", alias="prod", version=2)

    assert _reply(client, "echo@prod") == "v2:hello"


def test_stream_a_completion(client, streamer):
    stream = client.chat.completions.create(
        model="streamer",
        messages=[{"role": "user", "content": "hello big world"}],
        stream=True,
    )

    chunks = list(stream)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "hello big world "
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    assert chunks[0].id.startswith("chatcmpl-")
    assert {chunk.model for chunk in chunks} == {"streamer"}
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_a_model_without_predict_stream(client):
    chunks = list(client.chat.completions.create(model="echo@prod", messages=HELLO, stream=True))

    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "v1:hello"


def test_stream_with_usage(client, trigger):
    stream = client.chat.completions.create(
        model="trigger",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )

    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 1
    assert chunks[-1].usage.completion_tokens == 1
    assert chunks[-1].usage.total_tokens == 2
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_an_error_mid_stream_raises_in_the_sdk_after_the_first_chunks(client, streamer):
    stream = client.chat.completions.create(
        model="streamer", messages=[{"role": "user", "content": "raise now"}], stream=True
    )
    received = []

    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    assert received == ["raise "]
    assert "stream broke" not in str(raised.value)


def test_list_models(client, streamer, tools, trigger):
    ids = [model.id for model in client.models.list()]

    assert ids == ["echo", "echo@prod", "streamer", "tools", "trigger"]


def test_retrieve_a_model(client):
    model = client.models.retrieve("echo@prod")

    assert model.id == "echo@prod"
    assert model.object == "model"


def test_tool_calls_are_parsed_by_the_sdk(client, tools):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]

    completion = client.chat.completions.create(
        model="tools", messages=[{"role": "user", "content": "Paris"}], tools=tools
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id == "call_weather_1"
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_a_tool_result_conversation_goes_through(client, trigger):
    messages = [
        {"role": "user", "content": "Paris"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]

    completion = client.chat.completions.create(model="trigger", messages=messages)

    assert completion.choices[0].message.content == "sunny"


# --- typed errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "code"),
    [
        ("nope", "model_not_found"),
        ("echo/9", "version_not_found"),
        ("echo@nope", "alias_not_found"),
    ],
)
def test_unknown_model_version_or_alias_is_not_found_error(client, model, code):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model=model, messages=HELLO)

    assert raised.value.status_code == 404
    assert raised.value.code == code


def test_bad_key_is_authentication_error(sdk, registry):
    with pytest.raises(openai.AuthenticationError) as raised:
        sdk("cm_not-a-key").chat.completions.create(model="echo", messages=HELLO)

    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"


def test_revoked_key_is_authentication_error(sdk, registry):
    api_key, raw = make_key(name="revoked")
    services.revoke_api_key(key=api_key)

    with pytest.raises(openai.AuthenticationError):
        sdk(raw).models.list()


def test_key_limited_to_another_model_is_not_found(sdk, registry, trigger):
    limited = sdk(make_key(name="trigger-only", models=["trigger"])[1])

    with pytest.raises(openai.NotFoundError) as raised:
        limited.chat.completions.create(model="echo", messages=HELLO)

    assert raised.value.status_code == 404
    assert raised.value.code == "model_not_found"
    assert [model.id for model in limited.models.list()] == ["trigger"]
    answer = limited.chat.completions.create(model="trigger", messages=HELLO)
    assert answer.choices[0].message.content == "hello"


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"messages": HELLO, "temperature": "hot"}, "temperature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"messages": HELLO, "n": "2"}, "n"),
        ({"messages": HELLO, "max_tokens": "ten"}, "max_tokens"),
        ({"messages": HELLO, "stop": 5}, "stop"),
        ({"messages": HELLO, "tools": "get_weather"}, "tools"),
    ],
)
def test_bad_request_is_bad_request_error_naming_the_field(client, arguments, param):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="echo", **arguments)

    assert raised.value.status_code == 400
    assert raised.value.param == param
    assert param in raised.value.message


def test_a_raising_model_is_internal_server_error_and_the_server_goes_on(client, trigger):
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(
            model="trigger", messages=[{"role": "user", "content": "raise"}]
        )

    assert raised.value.status_code == 500
    assert "secret internal detail" not in raised.value.response.text
    assert "Traceback" not in raised.value.response.text
    answer = client.chat.completions.create(model="trigger", messages=HELLO)
    assert answer.choices[0].message.content == "hello"


def test_a_garbage_returning_model_is_a_502_status_error_and_the_server_goes_on(client, trigger):
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(
            model="trigger", messages=[{"role": "user", "content": "garbage"}]
        )

    assert raised.value.status_code == 502
    assert raised.value.code == "invalid_model_output"
    answer = client.chat.completions.create(model="trigger", messages=HELLO)
    assert answer.choices[0].message.content == "hello"


def test_throttled_is_rate_limit_error(client, settings):
    settings.CHATMODELS_THROTTLE_RATE = "1/min"
    client.models.list()

    with pytest.raises(openai.RateLimitError) as raised:
        client.models.list()

    assert raised.value.status_code == 429
