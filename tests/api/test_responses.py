"""`POST /v1/responses` as a client sees it: the response object, the typed event stream (each
validated against OpenAI's own `Response` and `ResponseStreamEvent`), the translation of every
Responses field into the chat request a model gets, and errors that name the field sent."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chatmodels import usage
from chatmodels.models import UsageBucket
from chatmodels.serving.dialects.responses_request import ChatTranslation
from tests.api import test_openai_spec
from tests.api.calls import error_of, get, post
from tests.helpers import make_key, register, streamed, streamed_body
from tests.sample_models import (
    BadChunkStreamingModel,
    MessagesReportModel,
    PrefixModel,
    RefusingModel,
    StreamingModel,
    ToolRoundTripModel,
    TriggerModel,
)
from tests.server_models import SlowStart, SyncTicker

pytestmark = pytest.mark.django_db

# OpenAI's OpenAPI document and its validator, shared with the chat-completions spec tests.
openai_spec = test_openai_spec.openai_spec
assert_matches = test_openai_spec.assert_matches

RESPONSES = "/v1/responses"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}

# Seventeen words: one more than the smallest max_output_tokens the Responses API allows.
WORDS = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
]


def response_events(response) -> list[dict[str, Any]]:
    """The events of a Responses stream; each `event:` line names its data's `type`."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/event-stream")
    text = streamed_body(response).decode()
    events = []
    for block in text.split("\n\n")[:-1]:
        event_line, data_line = block.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        events.append(data)
    return events


def _text(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


# --- the response object -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "text"), [("echo", "v2:hello"), ("echo/1", "v1:hello"), ("echo@prod", "v1:hello")]
)
def test_a_text_input_is_answered_with_a_response_object(client, key, assert_matches, model, text):
    register(name="echo", model=PrefixModel("v1:"), aliases=["prod"])
    register(name="echo", model=PrefixModel("v2:"))

    response = post(client, RESPONSES, {"model": model, "input": "hello"}, key=key)

    assert response.status_code == 200, response.content
    body = response.json()
    assert_matches(body, "Response")
    assert body["id"].startswith("resp_")
    assert body["object"] == "response"
    assert body["status"] == "completed"
    assert body["model"] == model
    (message,) = body["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["id"].startswith("msg_")
    assert message["content"] == [
        {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    ]
    assert body["usage"] == {
        "input_tokens": 1,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 1,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 2,
    }
    assert body["store"] is True  # kept by default, as OpenAI


def test_the_response_repeats_the_settings_it_was_asked_for(client, key, assert_matches):
    register(name="tools", model=ToolRoundTripModel())
    request = {
        "model": "tools",
        "instructions": "be brief",
        "input": "one two three",
        "temperature": 0.5,
        "top_p": 0.9,
        "max_output_tokens": 20,
        "metadata": {"ticket": "42"},
        "user": "u-1",
        "parallel_tool_calls": False,
        "store": True,
        "text": {"format": {"type": "text"}},
    }

    body = post(client, RESPONSES, request, key=key).json()

    assert_matches(body, "Response")
    assert _text(body) == "one two three"
    for field in ("instructions", "temperature", "top_p", "max_output_tokens", "metadata", "user"):
        assert body[field] == request[field], field
    assert body["parallel_tool_calls"] is False
    assert body["text"] == {"format": {"type": "text"}}
    assert body["tool_choice"] == "auto" and body["tools"] == []
    assert body["store"] is True


def test_a_tool_call_is_a_function_call_output_item(client, key, assert_matches):
    register(name="tools", model=ToolRoundTripModel())
    request = {"model": "tools", "input": "Paris", "tools": [WEATHER_TOOL], "tool_choice": "auto"}

    body = post(client, RESPONSES, request, key=key).json()

    assert_matches(body, "Response")
    (call,) = body["output"]
    assert call["type"] == "function_call"
    assert call["id"].startswith("fc_")
    assert call["call_id"] == "call_rt_1"
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert call["status"] == "completed"
    assert body["tools"] == [WEATHER_TOOL]


def test_a_tool_result_round_trip_is_answered(client, key, assert_matches):
    register(name="tools", model=ToolRoundTripModel())
    first = post(
        client, RESPONSES, {"model": "tools", "input": "Paris", "tools": [WEATHER_TOOL]}, key=key
    ).json()
    (call,) = first["output"]

    follow_up = [
        {"role": "user", "content": "Paris"},
        call,  # the output item, sent back as it came
        {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 24 C"},
    ]
    body = post(
        client,
        RESPONSES,
        {"model": "tools", "input": follow_up, "tools": [WEATHER_TOOL]},
        key=key,
    ).json()

    assert_matches(body, "Response")
    assert _text(body) == "The tool said: sunny, 24 C"


def test_a_length_cut_answer_is_incomplete(client, key, assert_matches):
    register(name="tools", model=ToolRoundTripModel())

    body = post(
        client,
        RESPONSES,
        {"model": "tools", "input": " ".join(WORDS), "max_output_tokens": 16},
        key=key,
    ).json()

    assert_matches(body, "Response")
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert _text(body) == " ".join(WORDS[:16])


def test_a_refusal_is_a_refusal_content_part_and_no_usage_is_made_up(client, key, assert_matches):
    register(name="refuser", model=RefusingModel())

    body = post(client, RESPONSES, {"model": "refuser", "input": "hm"}, key=key).json()

    assert_matches(body, "Response")
    (message,) = body["output"]
    assert message["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]
    assert "usage" not in body


# --- what the model receives -------------------------------------------------------------------


def test_instructions_input_items_and_params_reach_the_model_as_chat_ones(client, key):
    register(name="report", model=MessagesReportModel())
    items = [
        {"role": "developer", "content": "answer in French"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Paris?"}]},
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_1",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "and this?"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
                {"type": "input_file", "file_data": "data:text/plain;base64,aGk=", "filename": "a"},
            ],
        },
    ]
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    request = {
        "model": "report",
        "instructions": "be brief",
        "input": items,
        "temperature": 0.2,
        "top_p": 0.5,
        "max_output_tokens": 17,
        "tools": [WEATHER_TOOL, {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema}},
        "user": "u-1",
        "metadata": {"ticket": "42"},
        "parallel_tool_calls": False,
        "reasoning": {"effort": "low"},
        "seed": 7,
        "store": True,
        "min_p": 0.1,
        "custom_inputs": {"session": "s1"},
    }

    body = post(client, RESPONSES, request, key=key).json()

    report = json.loads(_text(body))
    assert report["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": "answer in French"},
        {"role": "user", "content": "Paris?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and this?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/a.png", "detail": "low"},
                },
                {
                    "type": "file",
                    "file": {"file_data": "data:text/plain;base64,aGk=", "filename": "a"},
                },
            ],
        },
    ]
    assert report["params"] == {
        "temperature": 0.2,
        "top_p": 0.5,
        "max_tokens": 17,
        "n": 1,
        "stream": False,
        "custom_inputs": {"session": "s1"},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "parameters": WEATHER_TOOL["parameters"],
                    "strict": True,
                },
            },
            {"type": "web_search"},  # passed as it is: the model decides
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        },
        "user": "u-1",
        "metadata": {"ticket": "42"},
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "seed": 7,
        "extra": {"min_p": 0.1},  # a vendor key, as sent; `store` is the server's
    }


def test_every_responses_param_becomes_its_chat_completions_param():
    # The chat request body a model's params are read from (tool_choice, response_format, user,
    # metadata… reach ChatParams from it as chat-completions params).
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    body = {
        "model": "m",
        "input": "hi",
        "instructions": "be brief",
        "tools": [WEATHER_TOOL, {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {
            "format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True},
            "verbosity": "low",
        },
        "max_output_tokens": 18,
        "temperature": 0.3,
        "top_p": 0.8,
        "user": "u-1",
        "metadata": {"k": "v"},
        "parallel_tool_calls": False,
        "reasoning": {"effort": "low"},
        "store": True,
        "include": ["message.output_text.logprobs"],
        "truncation": "disabled",
        "stream": True,
        "seed": 7,
    }

    chat = ChatTranslation(body).chat_body

    assert chat == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "parameters": WEATHER_TOOL["parameters"],
                    "strict": True,
                },
            },
            {"type": "web_search"},
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
        "verbosity": "low",
        "max_tokens": 18,
        "temperature": 0.3,
        "top_p": 0.8,
        "user": "u-1",
        "metadata": {"k": "v"},
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "stream": True,
        "seed": 7,
    }


@pytest.mark.parametrize(
    ("text", "response_format"),
    [
        ({"format": {"type": "json_object"}}, {"type": "json_object"}),
        ({"format": {"type": "text"}}, None),
        (None, None),
    ],
)
def test_text_format_becomes_response_format(text, response_format):
    chat = ChatTranslation({"input": "hi", "text": text}).chat_body

    assert chat.get("response_format") == response_format


# --- the event stream --------------------------------------------------------------------------


def _stream(client, key, request: dict[str, Any]) -> list[dict[str, Any]]:
    return response_events(post(client, RESPONSES, {**request, "stream": True}, key=key))


def _check_stream(events: list[dict[str, Any]], assert_matches) -> None:
    for event in events:
        assert_matches(event, "ResponseStreamEvent")
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert [event["type"] for event in events[:2]] == ["response.created", "response.in_progress"]
    assert events[0]["response"]["status"] == "in_progress"
    ids = {event["response"]["id"] for event in events if "response" in event}
    assert len(ids) == 1


def test_a_text_stream_is_the_full_typed_event_sequence(client, key, assert_matches):
    register(name="tools", model=ToolRoundTripModel())

    events = _stream(client, key, {"model": "tools", "input": "hello big world"})

    _check_stream(events, assert_matches)
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [event["delta"] for event in events if event["type"] == "response.output_text.delta"]
    assert deltas == ["hello", " big", " world"]
    assert events[7]["text"] == "hello big world"
    item_id = events[2]["item"]["id"]
    assert {event["item_id"] for event in events[3:9]} == {item_id}
    completed = events[-1]["response"]
    assert completed["status"] == "completed"
    assert _text(completed) == "hello big world"
    assert completed["output"][0]["id"] == item_id
    assert completed["usage"]["input_tokens"] == 3
    assert completed["usage"]["output_tokens"] == 3
    assert completed["usage"]["total_tokens"] == 6


def test_a_streamed_tool_call_has_argument_deltas(client, key, assert_matches):
    register(name="tools", model=ToolRoundTripModel())

    events = _stream(client, key, {"model": "tools", "input": "Oslo", "tools": [WEATHER_TOOL]})

    _check_stream(events, assert_matches)
    kinds = [event["type"] for event in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, done = events[2]["item"], events[6]["item"]
    assert added["type"] == "function_call" and added["status"] == "in_progress"
    assert added["name"] == "get_weather" and added["call_id"] == "call_rt_1"
    deltas = "".join(event["delta"] for event in events[3:5])
    assert json.loads(deltas) == {"city": "Oslo"}
    assert events[5]["arguments"] == deltas and events[5]["name"] == "get_weather"
    assert done == {**added, "arguments": deltas, "status": "completed"}
    assert events[-1]["response"]["output"] == [done]


def test_a_model_without_predict_stream_streams_its_answer(client, key, assert_matches):
    register(name="echo", model=PrefixModel("v1:"))

    events = _stream(client, key, {"model": "echo", "input": "hello"})

    _check_stream(events, assert_matches)
    assert _text(events[-1]["response"]) == "v1:hello"
    assert events[-1]["response"]["usage"]["total_tokens"] == 2


def test_a_streamed_refusal_without_usage(client, key, assert_matches):
    register(name="refuser", model=RefusingModel())

    events = _stream(client, key, {"model": "refuser", "input": "hm"})

    _check_stream(events, assert_matches)
    assert [e["delta"] for e in events if e["type"] == "response.refusal.delta"] == [
        "I can't ",
        "help with that.",
    ]
    (done,) = [e for e in events if e["type"] == "response.refusal.done"]
    assert done["refusal"] == "I can't help with that."
    completed = events[-1]["response"]
    assert completed["output"][0]["content"] == [{"type": "refusal", "refusal": done["refusal"]}]
    assert "usage" not in completed  # the model reported none: none is made up


def test_a_length_cut_stream_ends_incomplete(client, key, assert_matches):
    register(name="tools", model=ToolRoundTripModel())

    request = {"model": "tools", "input": " ".join(WORDS), "max_output_tokens": 16}
    events = _stream(client, key, request)

    _check_stream(events, assert_matches)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize(
    ("model", "text", "code"),
    [
        (StreamingModel, "raise now", "model_error"),
        (BadChunkStreamingModel, "x", "invalid_model_output"),
    ],
    ids=["raised", "invalid-chunk"],
)
def test_a_stream_that_fails_midway_ends_with_error_and_response_failed(
    client, key, assert_matches, model, text, code
):
    register(name="m", model=model())

    events = _stream(client, key, {"model": "m", "input": text})

    _check_stream(events, assert_matches)
    error, failed = events[-2:]
    assert error["type"] == "error" and error["code"] == code
    assert "stream broke" not in error["message"]  # no internal detail leaks
    assert failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": error["message"]}
    (item,) = failed["response"]["output"]
    assert item["status"] == "incomplete" and item["content"][0]["text"]
    assert "response.completed" not in [event["type"] for event in events]


def test_a_stream_that_fails_before_it_starts_is_an_error_response(client, key):
    register(name="m", model=TriggerModel())

    response = post(client, RESPONSES, {"model": "m", "input": "raise", "stream": True}, key=key)

    assert error_of(response, 500)["code"] == "model_error"


def test_a_silent_stream_sends_keep_alive_comments(client, key, settings):
    settings.CHATMODELS_STREAM_KEEPALIVE = 0.05
    register(name="slow", model=SlowStart(), model_config={"seconds": 0.5})

    response = post(client, RESPONSES, {"model": "slow", "input": "go", "stream": True}, key=key)

    blocks = streamed_body(response).decode().split("\n\n")[:-1]
    assert ": keep-alive" in blocks
    events = [json.loads(block.split("data: ", 1)[1]) for block in blocks if block[0] != ":"]
    assert events[-1]["type"] == "response.completed"
    assert _text(events[-1]["response"]) == "finally"


def test_a_client_that_goes_away_stops_the_model(client, key, tmp_path, settings):
    settings.CHATMODELS_WORKER_PATHS = [str(tmp_path)]  # where the model records, from its worker
    register(name="ticker", model=SyncTicker(), model_config={"record_dir": str(tmp_path)})
    response = post(client, RESPONSES, {"model": "ticker", "input": "go", "stream": True}, key=key)
    events = streamed(response)
    first = next(events)
    assert first.startswith(b"event: response.created")

    events.close()  # the client goes away

    for _attempt in range(50):  # a 10 s stream, stopped at its next yield (0.1 s)
        if any(path.name.startswith("finally-") for path in tmp_path.iterdir()):
            break
        time.sleep(0.1)
    assert any(path.name.startswith("finally-") for path in tmp_path.iterdir())


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({"model": "echo", "input": "hi", "conversation": 5}, "conversation"),
        (
            {"model": "echo", "input": "hi", "previous_response_id": "r", "conversation": "c"},
            "conversation",
        ),
        ({"model": "echo", "input": "hi", "store": "yes"}, "store"),
        ({"model": "echo", "input": "hi", "background": True}, "background"),
        ({"model": "echo"}, "input"),
        ({"model": "echo", "input": []}, "input"),
        ({"model": "echo", "input": 5}, "input"),
        ({"input": "hi"}, "model"),
        ({"model": "echo", "input": [{"type": "item_reference", "id": "x"}]}, "input[0]"),
        ({"model": "echo", "input": [{"type": "web_search_call"}]}, "input[0].type"),
        ({"model": "echo", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        (
            {"model": "echo", "input": [{"role": "user", "content": [{"type": "input_video"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"model": "echo", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        (
            {"model": "echo", "input": [{"role": "user", "content": 5}]},
            "input[0].content",
        ),
        ({"model": "echo", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        # The Responses API's minimum is 16 (OpenAI's document), not chat's 1.
        ({"model": "echo", "input": "hi", "max_output_tokens": 15}, "max_output_tokens"),
        ({"model": "echo", "input": "hi", "max_output_tokens": "ten"}, "max_output_tokens"),
        ({"model": "echo", "input": "hi", "temperature": "hot"}, "temperature"),
        ({"model": "echo", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        (
            {"model": "echo", "input": "hi", "tools": [{**WEATHER_TOOL, "description": 5}]},
            "tools[0].description",
        ),
        (
            {"model": "echo", "input": "hi", "text": {"format": {"type": "yaml"}}},
            "text.format.type",
        ),
        (
            {"model": "echo", "input": "hi", "text": {"format": {"type": "json_schema"}}},
            "text.format.name",
        ),
        (
            {
                "model": "echo",
                "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}],
            },
            "input[0].content[0].file_id",
        ),
    ],
)
def test_a_bad_request_is_400_naming_the_responses_field(
    client, key, assert_matches, request_body, param
):
    register(name="echo", model=PrefixModel("v1:"))

    response = post(client, RESPONSES, request_body, key=key)

    error = error_of(response, 400)
    assert_matches(response.json(), "ErrorResponse")
    assert error["param"] == param
    assert param in error["message"]


def test_an_unknown_previous_response_id_is_400_as_openai_says_it(client, key):
    register(name="echo", model=PrefixModel("v1:"))
    request = {"model": "echo", "input": "hi", "previous_response_id": "resp_1"}

    error = error_of(post(client, RESPONSES, request, key=key), 400)

    assert error["message"] == "Previous response with id 'resp_1' not found."
    assert error["code"] == "previous_response_not_found"


def test_keys_and_models_are_checked_as_on_chat_completions(client, key):
    register(name="echo", model=PrefixModel("v1:"))
    register(name="other", model=PrefixModel("o:"))
    other_only = make_key(name="other-only", models=["other"])[1]
    request = {"model": "echo", "input": "hi"}

    assert error_of(post(client, RESPONSES, request), 401)["code"] == "invalid_api_key"
    assert error_of(post(client, RESPONSES, request, key=other_only), 404)["code"] == (
        "model_not_found"
    )
    assert error_of(post(client, RESPONSES, {**request, "model": "echo/9"}, key=key), 404)[
        "code"
    ] == ("version_not_found")
    assert error_of(post(client, RESPONSES, request, key=key, raw=b"{nope"), 400)
    assert post(client, RESPONSES, request, key=key).status_code == 200


def test_responses_calls_are_counted_in_usage_like_chat_completions(client):
    usage.discard()
    register(name="tools", model=ToolRoundTripModel())
    api_key, raw = make_key(name="counted")

    post(client, RESPONSES, {"model": "tools", "input": "one two"}, key=raw)
    response_events(
        post(client, RESPONSES, {"model": "tools", "input": "a b c", "stream": True}, key=raw)
    )
    post(client, RESPONSES, {"model": "tools", "input": "x", "max_output_tokens": 0}, key=raw)
    usage.flush()

    rows = list(UsageBucket.objects.filter(api_key=api_key))
    assert sum(row.requests for row in rows) == 3
    assert sum(row.invalid_requests for row in rows) == 1
    assert sum(row.prompt_tokens for row in rows) == 5  # words, as the model counts them
    assert sum(row.completion_tokens for row in rows) == 5
    usage.discard()


def test_the_route_is_in_our_openapi_schema(client):
    document = json.loads(get(client, "/api/schema/?format=json").content)

    operation = document["paths"]["/v1/responses"]["post"]
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "input"} <= set(request["required"])
    for status in ("200", "400", "401", "404", "413", "429", "500", "502", "503"):
        assert status in operation["responses"], status
