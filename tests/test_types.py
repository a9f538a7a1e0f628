"""The chat types: construction from OpenAI-shaped dicts, validation errors, to_dict()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import chatmodels
from chatmodels import (
    AudioContentPart,
    ChatChoice,
    ChatChoiceDelta,
    ChatChoiceLogProbs,
    ChatChunk,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    ChatParams,
    ChatRequest,
    ChatResponse,
    FileContentPart,
    FunctionToolCallArguments,
    FunctionToolDefinition,
    ImageContentPart,
    ImageUrl,
    InputAudio,
    InputFile,
    ParamProperty,
    RefusalContentPart,
    TextContentPart,
    TokenLogProb,
    TokenUsageStats,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    ToolParamsSchema,
    TopTokenLogProb,
)
from chatmodels.exceptions import ChatDataError

REPO_ROOT = Path(__file__).resolve().parents[1]


def mock_response() -> dict:
    """A full OpenAI `chat.completion`, as MLflow's tests mock it."""
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1677652288,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there, how may I help?"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
    }


def user(text: str = "hello") -> dict:
    return {"role": "user", "content": text}


def raises_data_error(build, *fragments: str, param: str | None = None) -> ChatDataError:
    """`build()` raises a ChatDataError (a ValueError) whose message contains every fragment."""
    with pytest.raises(ValueError) as caught:
        build()
    error = caught.value
    assert isinstance(error, ChatDataError)
    for fragment in fragments:
        assert fragment in str(error), f"{fragment!r} not in {str(error)!r}"
    if param is not None:
        assert error.param == param
    return error


# ---------------------------------------------------------------------------------------------
# Construction from the OpenAI / MLflow shape


def test_response_from_mock_response_with_keyword_arguments():
    response = ChatResponse(**mock_response())

    assert response.id == "chatcmpl-123"
    assert response.object == "chat.completion"
    assert response.created == 1677652288
    assert response.model == "gpt-4o-mini"
    choice = response.choices[0]
    assert isinstance(choice, ChatChoice)
    assert isinstance(choice.message, ChatMessage)
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello there, how may I help?"
    assert choice.finish_reason == "stop"
    assert choice.logprobs is None
    assert isinstance(response.usage, TokenUsageStats)
    assert response.usage.total_tokens == 21


def test_response_from_dict_equals_keyword_construction():
    assert ChatResponse.from_dict(mock_response()) == ChatResponse(**mock_response())


def test_response_round_trips_through_to_dict():
    data = mock_response()
    response = ChatResponse.from_dict(data)

    expected = json.loads(json.dumps(data))
    del expected["choices"][0]["logprobs"]  # None is left out
    assert response.to_dict() == expected
    assert ChatResponse.from_dict(response.to_dict()) == response


def test_response_defaults_follow_the_contract():
    response = ChatResponse(choices=[{"message": {"role": "assistant", "content": "hi"}}])

    assert response.object == "chat.completion"
    assert isinstance(response.created, int) and response.created > 1_600_000_000
    assert response.usage is None and response.id is None and response.model is None
    assert response.choices[0].index == 0
    assert response.choices[0].finish_reason == "stop"


def test_params_defaults_follow_the_contract():
    params = ChatParams()

    assert params.temperature == 1.0
    assert params.n == 1
    assert params.stream is False
    assert params.max_tokens is None and params.stop is None and params.tools is None
    assert params.to_dict() == {"temperature": 1.0, "n": 1, "stream": False}


def test_message_with_content_parts_converts_each_kind():
    message = ChatMessage(
        role="user",
        content=[
            {"type": "text", "text": "What is in this picture?"},
            {
                "type": "image_url",
                "image_url": {"url": "https://example.com/a.png", "detail": "low"},
            },
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        ],
    )

    text, image, audio = message.content
    assert isinstance(text, TextContentPart) and text.text == "What is in this picture?"
    assert isinstance(image, ImageContentPart) and isinstance(image.image_url, ImageUrl)
    assert image.image_url.url == "https://example.com/a.png"
    assert image.image_url.detail == "low"
    assert isinstance(audio, AudioContentPart) and isinstance(audio.input_audio, InputAudio)
    assert audio.input_audio.format == "wav"
    assert message.to_dict()["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/a.png", "detail": "low"},
    }


def test_message_with_tool_calls_converts_them():
    message = ChatMessage.from_dict(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        }
    )

    call = message.tool_calls[0]
    assert isinstance(call, ToolCall)
    assert isinstance(call.function, FunctionToolCallArguments)
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert message.to_dict() == {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    }


def test_tool_call_gets_an_id_and_type_by_default():
    call = ToolCall(function={"name": "f", "arguments": "{}"})

    assert call.type == "function"
    assert call.id.startswith("call_") and len(call.id) > len("call_")


def test_tool_message_answers_a_call():
    message = ChatMessage(role="tool", content="12 degrees", tool_call_id="call_1", name="weather")

    assert message.to_dict() == {
        "role": "tool",
        "content": "12 degrees",
        "tool_call_id": "call_1",
        "name": "weather",
    }


def test_tools_convert_to_tool_definitions():
    params = ChatParams(
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string", "description": "City name"}},
                        "required": ["city"],
                        "additionalProperties": False,
                    },
                    "strict": True,
                },
            }
        ]
    )

    tool = params.tools[0]
    assert isinstance(tool, ToolDefinition) and tool.type == "function"
    assert isinstance(tool.function, FunctionToolDefinition)
    assert tool.function.strict is True
    assert isinstance(tool.function.parameters, ToolParamsSchema)
    assert tool.function.parameters.required == ["city"]
    assert tool.function.parameters.additionalProperties is False
    assert isinstance(tool.function.parameters.properties["city"], ParamProperty)
    assert tool.function.parameters.properties["city"].type == "string"
    assert params.to_dict()["tools"][0]["function"]["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
        "additionalProperties": False,
    }


def test_function_tool_definition_defaults_and_wrapping():
    function = FunctionToolDefinition(name="noop")

    assert function.strict is False and function.parameters is None
    assert function.to_tool_definition() == ToolDefinition(function=function)
    assert function.to_tool_definition().to_dict() == {
        "type": "function",
        "function": {"name": "noop", "strict": False},
    }


def test_logprobs_convert_to_nested_types():
    data = mock_response()
    data["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": "Hello",
                "logprob": -0.1,
                "bytes": [72, 101],
                "top_logprobs": [{"token": "Hello", "logprob": -0.1, "bytes": None}],
            }
        ]
    }

    response = ChatResponse.from_dict(data)

    logprobs = response.choices[0].logprobs
    assert isinstance(logprobs, ChatChoiceLogProbs)
    assert isinstance(logprobs.content[0], TokenLogProb)
    assert isinstance(logprobs.content[0].top_logprobs[0], TopTokenLogProb)
    assert logprobs.content[0].bytes == [72, 101]
    assert response.to_dict()["choices"][0]["logprobs"] == {
        "content": [
            {
                "token": "Hello",
                "logprob": -0.1,
                "bytes": [72, 101],
                "top_logprobs": [{"token": "Hello", "logprob": -0.1}],
            }
        ]
    }


def test_chunk_converts_deltas_and_tool_call_deltas():
    chunk = ChatChunk.from_dict(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"a"'},
                            }
                        ],
                    },
                    "finish_reason": None,
                }
            ],
        }
    )

    choice = chunk.choices[0]
    assert isinstance(choice, ChatChunkChoice)
    assert isinstance(choice.delta, ChatChoiceDelta)
    assert isinstance(choice.delta.tool_calls[0], ToolCallDelta)
    assert choice.delta.tool_calls[0].function == {"name": "f", "arguments": '{"a"'}
    assert chunk.to_dict()["choices"][0] == {
        "index": 0,
        "delta": {
            "role": "assistant",
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a"'},
                }
            ],
        },
    }


def test_chunk_defaults():
    chunk = ChatChunk(choices=[{"delta": {"content": "Hel"}}])

    assert chunk.object == "chat.completion.chunk"
    assert isinstance(chunk.created, int)
    assert chunk.choices[0].index == 0
    assert chunk.choices[0].finish_reason is None
    assert chunk.choices[0].delta.role == "assistant"
    assert chunk.to_dict()["choices"] == [
        {"delta": {"role": "assistant", "content": "Hel"}, "index": 0}
    ]


def test_already_typed_values_are_kept_as_given():
    message = ChatMessage(role="user", content="hi")
    request = ChatRequest(messages=[message])

    assert request.messages[0] is message


def test_request_accepts_a_string_stop_and_a_list_stop():
    assert ChatRequest(messages=[user()], stop="\n").stop == "\n"
    assert ChatRequest(messages=[user()], stop=["\n", "END"]).stop == ["\n", "END"]


def test_integers_are_accepted_where_numbers_are_expected():
    assert ChatParams(temperature=0).temperature == 0
    assert ChatParams(top_p=1).top_p == 1


# ---------------------------------------------------------------------------------------------
# Bad values: a ValueError naming the field path and the expected type


@pytest.mark.parametrize(
    ("data", "fragments", "param"),
    [
        ({"messages": [{"role": 1}]}, ["messages[0].role", "expected str", "int"], None),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "video": "x"}]}]},
            ["messages[0].content[0].type", "'text', 'image_url', 'input_audio'", "'video'"],
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": ["just a string"]}]},
            ["messages[0].content[0]", "content part"],
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            ["messages[0].content[0].text", "expected str"],
            "messages[0].content[0].text",
        ),
        (
            {"messages": [{"role": "user", "content": 5}]},
            ["messages[0].content", "str or list of content parts"],
            "messages[0].content",
        ),
        (
            {"messages": [user()], "temperature": "hot"},
            ["temperature", "expected number", "str"],
            "temperature",
        ),
        (
            {"messages": [user()], "temperature": -0.5},
            ["temperature", "between 0 and 2"],
            "temperature",
        ),
        ({"messages": [user()], "n": 0}, ["n: expected int between 1 and 128"], "n"),
        ({"messages": [user()], "n": True}, ["n: expected int", "bool"], "n"),
        ({"messages": [user()], "max_tokens": "10"}, ["max_tokens: expected int", "str"], None),
        ({"messages": [user()], "max_tokens": 2.5}, ["max_tokens: expected int", "float"], None),
        ({"messages": [user()], "max_tokens": 0}, ["max_tokens: expected int >= 1"], None),
        ({"messages": [user()], "stop": 3}, ["stop: expected str or list of str", "int"], "stop"),
        ({"messages": [user()], "stop": ["ok", 3]}, ["stop[1]: expected str", "int"], "stop[1]"),
        ({"messages": [user()], "stream": "yes"}, ["stream: expected bool", "str"], "stream"),
        ({"messages": [user()], "top_p": 1.5}, ["top_p", "between 0 and 1"], "top_p"),
        ({"messages": [user()], "top_k": "5"}, ["top_k: expected int"], "top_k"),
        ({"messages": [user()], "custom_inputs": [1]}, ["custom_inputs", "object (dict)"], None),
        (
            {"messages": [user()], "tools": {"type": "function"}},
            ["tools: expected list of ToolDefinition", "dict"],
            "tools",
        ),
        (
            {"messages": [user()], "tools": [{"type": "function", "function": {"name": 1}}]},
            ["tools[0].function.name: expected str"],
            "tools[0].function.name",
        ),
        (
            {"messages": [user()], "tools": [{"type": "function"}]},
            ["tools[0].function: is required"],
            "tools[0].function",
        ),
        (
            {
                "messages": [user()],
                "tools": [
                    {"function": {"name": "f", "parameters": {"properties": {}, "required": "a"}}}
                ],
            },
            ["tools[0].function.parameters.required", "list of str"],
            None,
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]},
                ]
            },
            ["messages[0].tool_calls[0].function.arguments: is required"],
            None,
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
                    }
                ]
            },
            ["messages[0].tool_calls[0].function.arguments: expected str", "dict"],
            None,
        ),
        ({"messages": ["hello"]}, ["messages[0]: expected ChatMessage", "str"], "messages[0]"),
        ({"messages": "hello"}, ["messages: expected list of ChatMessage"], "messages"),
        ({"temperature": 0.5}, ["messages: is required"], "messages"),
        ({"messages": []}, ["messages: expected a non-empty list"], "messages"),
        ({"messages": [{"content": "no role"}]}, ["messages[0].role: is required"], None),
    ],
)
def test_bad_request_values_raise_value_error_naming_the_field(data, fragments, param):
    raises_data_error(lambda: ChatRequest.from_dict(data), *fragments, param=param)


def test_keyword_construction_validates_like_from_dict():
    raises_data_error(
        lambda: ChatRequest(messages=[{"role": 1}]), "messages[0].role: expected str", "int 1"
    )
    raises_data_error(lambda: ChatRequest(messages=[]), "messages", "non-empty")
    raises_data_error(lambda: ChatParams(temperature="1"), "temperature: expected number")
    raises_data_error(lambda: ChatMessage(role=None), "role: is required", param="role")


def test_request_that_is_not_a_dict_is_refused():
    raises_data_error(lambda: ChatRequest.from_dict(["messages"]), "expected object (dict)")


def test_error_message_shows_the_bad_value_shortly():
    error = raises_data_error(lambda: ChatMessage(role="x" * 500, content=12345), "int 12345")

    assert len(str(error)) < 200


@pytest.mark.parametrize(
    ("build", "fragments"),
    [
        (
            lambda: ChatResponse.from_dict({"choices": [{"message": {"role": 7}}]}),
            ["choices[0].message.role: expected str"],
        ),
        (
            lambda: ChatResponse(
                choices=[{"message": {"role": "assistant", "content": "a"}, "index": "0"}]
            ),
            ["choices[0].index: expected int", "str"],
        ),
        (lambda: ChatResponse.from_dict({"id": "x"}), ["choices: is required"]),
        (lambda: ChatResponse(choices="hi"), ["choices: expected list of ChatChoice"]),
        (
            lambda: ChatResponse(choices=[], usage={"total_tokens": "3"}),
            ["usage.total_tokens: expected int"],
        ),
        (lambda: ChatResponse(choices=[], usage="many"), ["usage: expected TokenUsageStats"]),
        (lambda: ChatResponse(choices=[], created="now"), ["created: expected int"]),
        (lambda: ChatResponse(choices=[], custom_outputs=[1]), ["custom_outputs"]),
        (
            lambda: ChatResponse(
                choices=[
                    {
                        "message": {"role": "assistant", "content": "a"},
                        "logprobs": {
                            "content": [{"token": "a", "logprob": "x", "top_logprobs": []}]
                        },
                    }
                ]
            ),
            ["choices[0].logprobs.content[0].logprob: expected number"],
        ),
        (
            lambda: ChatChunk(choices=[{"delta": {"tool_calls": [{"index": "a"}]}}]),
            ["choices[0].delta.tool_calls[0].index: expected int"],
        ),
        (
            lambda: ChatChunk(choices=[{"delta": {"content": ["parts"]}}]),
            ["choices[0].delta.content: expected str"],
        ),
        (lambda: ChatChunk(choices=[{"index": 0}]), ["choices[0].delta: is required"]),
        (
            lambda: ImageContentPart(image_url={"detail": "low"}),
            ["image_url.url: is required"],
        ),
        (lambda: TokenUsageStats(prompt_tokens=True), ["prompt_tokens: expected int", "bool"]),
    ],
)
def test_bad_response_values_raise_value_error_naming_the_field(build, fragments):
    raises_data_error(build, *fragments)


def test_validate_rechecks_objects_mutated_after_construction():
    response = ChatResponse(**mock_response())
    response.choices[0].message.content = 42

    raises_data_error(response.validate, "choices[0].message.content", "got int 42")


# ---------------------------------------------------------------------------------------------
# to_dict(), aliases, split(), OpenAI request details


def test_to_dict_leaves_out_none_fields_at_every_level_and_is_json():
    request = ChatRequest(
        messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
            },
        ],
        tools=[{"function": {"name": "f", "parameters": {"properties": {}}}}],
        custom_inputs={"kept": 1, "also kept": None},
    )

    data = request.to_dict()
    custom_inputs = data.pop("custom_inputs")

    def find_none(value, path="$"):
        if value is None:
            return [path]
        if isinstance(value, dict):
            return [p for key, item in value.items() for p in find_none(item, f"{path}.{key}")]
        if isinstance(value, list):
            return [p for i, item in enumerate(value) for p in find_none(item, f"{path}[{i}]")]
        return []

    assert find_none(data) == []
    assert data["messages"][0] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "u"}}],
    }
    # The model's own data is kept as given, None values too (as in MLflow).
    assert custom_inputs == {"kept": 1, "also kept": None}
    data["custom_inputs"] = custom_inputs
    assert json.loads(json.dumps(data)) == data
    assert ChatRequest.from_dict(data).to_dict() == data


def test_to_dict_returns_plain_containers():
    data = ChatResponse(**mock_response()).to_dict()

    def only_plain(value):
        if isinstance(value, dict):
            return type(value) is dict and all(only_plain(item) for item in value.values())
        if isinstance(value, list):
            return type(value) is list and all(only_plain(item) for item in value)
        return isinstance(value, (str, int, float, bool))

    assert only_plain(data)


def test_mlflow_aliases_are_the_same_classes():
    assert ChatCompletionRequest is ChatRequest
    assert ChatCompletionResponse is ChatResponse
    assert ChatCompletionChunk is ChatChunk
    assert issubclass(ChatRequest, ChatParams)


def test_every_public_name_is_exported_from_the_package():
    for name in chatmodels.__all__:
        assert getattr(chatmodels, name) is not None
    assert {"ChatModel", "ModelContext", "ChatRequest", "ToolCallDelta"} <= set(chatmodels.__all__)


def test_split_returns_messages_and_params():
    request = ChatRequest.from_dict(
        {
            "messages": [user("hi")],
            "temperature": 0.2,
            "max_tokens": 5,
            "stop": ["\n"],
            "custom_inputs": {"k": "v"},
            "tools": [{"function": {"name": "f"}}],
        }
    )

    messages, params = request.split()

    assert messages == [ChatMessage(role="user", content="hi")]
    assert type(params) is ChatParams
    assert not hasattr(params, "messages")
    assert params.temperature == 0.2
    assert params.max_tokens == 5
    assert params.stop == ["\n"]
    assert params.custom_inputs == {"k": "v"}
    assert params.tools[0].function.name == "f"
    assert "messages" not in params.to_dict()


def test_max_completion_tokens_is_read_as_max_tokens():
    request = ChatRequest.from_dict({"messages": [user()], "max_completion_tokens": 7})

    assert request.max_tokens == 7
    assert request.split()[1].max_tokens == 7


def test_max_tokens_wins_over_max_completion_tokens():
    request = ChatRequest.from_dict(
        {"messages": [user()], "max_tokens": 3, "max_completion_tokens": 7}
    )

    assert request.max_tokens == 3


def test_max_completion_tokens_is_used_when_max_tokens_is_null():
    request = ChatRequest.from_dict(
        {"messages": [user()], "max_tokens": None, "max_completion_tokens": 7}
    )

    assert request.max_tokens == 7


def test_bad_max_completion_tokens_is_refused():
    raises_data_error(
        lambda: ChatRequest.from_dict({"messages": [user()], "max_completion_tokens": "many"}),
        "max_completion_tokens: expected int",
    )


def test_unknown_request_keys_go_to_extra_and_nested_unknown_keys_are_ignored():
    request = ChatRequest.from_dict(
        {
            "model": "gpt-4o",
            "stream_options": {"include_usage": True},
            "_PARAM_NAMES": ["not", "a", "field"],
            "messages": [{"role": "user", "content": "hi", "annotations": []}],
        }
    )
    response = ChatResponse.from_dict(
        {
            **mock_response(),
            "system_fingerprint": "fp_1",
            "service_tier": "default",
        }
    )

    # `model` and `stream_options` are the server's; every other unknown key reaches the model.
    assert request.to_dict() == {
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 1.0,
        "n": 1,
        "stream": False,
        "extra": {"_PARAM_NAMES": ["not", "a", "field"]},
    }
    assert "system_fingerprint" not in response.to_dict()


OPENAI_PARAMS = {
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object", "default": None}},
    },
    "seed": 42,
    "user": "user-1",
    "metadata": {"team": "search"},
    "logprobs": True,
    "top_logprobs": 3,
    "logit_bias": {"50256": -100},
    "reasoning_effort": "low",
    "max_completion_tokens": 64,
}


def test_every_openai_request_parameter_reaches_the_params():
    tools = [{"type": "function", "function": {"name": "get_weather"}}]  # tool_choice names it
    request = ChatRequest.from_dict(
        {
            "messages": [user()],
            "tools": tools,
            **OPENAI_PARAMS,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
        }
    )

    _messages, params = request.split()

    for name, value in OPENAI_PARAMS.items():
        assert getattr(params, name) == value, name
    assert params.max_tokens == 64  # max_completion_tokens is also read as max_tokens
    assert params.extra == {"min_p": 0.05, "repetition_penalty": 1.1}
    data = params.to_dict()
    assert {key: data[key] for key in OPENAI_PARAMS} == OPENAI_PARAMS
    assert data["extra"] == {"min_p": 0.05, "repetition_penalty": 1.1}
    assert ChatRequest.from_dict(request.to_dict()) == request


def test_tool_choice_may_be_a_string():
    assert ChatRequest.from_dict({"messages": [user()], "tool_choice": "required"}).tool_choice == (
        "required"
    )


def test_an_explicit_extra_is_merged_with_the_unknown_keys():
    request = ChatRequest.from_dict({"messages": [user()], "extra": {"a": 1}, "min_p": 0.1})

    assert request.extra == {"a": 1, "min_p": 0.1}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"seed": "7"}, "seed: expected int"),
        ({"user": 5}, "user: expected str"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls: expected bool"),
        ({"response_format": "json"}, "response_format: expected object (dict)"),
        ({"logprobs": 1}, "logprobs: expected bool"),
        ({"max_completion_tokens": 0}, "max_completion_tokens: expected int >= 1"),
        ({"extra": 5}, "extra: expected object (dict)"),
    ],
)
def test_bad_openai_parameters_are_refused_naming_the_field(params, fragment):
    raises_data_error(lambda: ChatRequest.from_dict({"messages": [user()], **params}), fragment)


def test_chat_params_keys_lists_every_field():
    keys = ChatParams.keys()

    assert {"temperature", "tools", "custom_inputs", "tool_choice", "extra"} <= keys
    assert "messages" not in keys
    assert "messages" in ChatRequest.keys()  # noqa: SIM118 - a classmethod, not a dict


def test_null_optional_fields_from_a_client_are_accepted():
    request = ChatRequest.from_dict(
        {"messages": [user()], "max_tokens": None, "stop": None, "tools": None}
    )

    assert request.max_tokens is None and request.stop is None and request.tools is None


# ---------------------------------------------------------------------------------------------
# Importable without Django


def test_importing_chatmodels_needs_no_django():
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    code = "\n".join(
        [
            "import json, sys",
            "import chatmodels",
            "chatmodels.ChatModel",
            "message = {'role': 'assistant', 'content': 'ok'}",
            "response = chatmodels.ChatResponse(choices=[{'message': message}])",
            "django = sorted(m for m in sys.modules if m.split('.')[0] == 'django')",
            "content = response.choices[0].message.content",
            "print(json.dumps({'django': django, 'content': content}))",
        ]
    )

    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"django": [], "content": "ok"}


def test_null_parameters_mean_their_defaults_as_in_the_openai_api():
    request = ChatRequest.from_dict(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": None,
            "n": None,
            "stream": None,
        }
    )
    _messages, params = request.split()
    assert (params.temperature, params.n, params.stream) == (1.0, 1, False)


def test_developer_role_refusal_and_file_parts_and_other_tools_reach_the_model():
    data = {
        "messages": [
            {"role": "developer", "content": "Answer in French."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Summarise this"},
                    {"type": "file", "file": {"file_id": "file-1", "filename": "a.pdf"}},
                ],
            },
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
            {"role": "assistant", "refusal": "Still no."},
        ],
        "tools": [
            {"type": "function", "function": {"name": "f"}},
            {"type": "web_search_preview", "search_context_size": "low", "note": None},
            {"type": "custom", "custom": {"name": "grammar", "format": {"type": "text"}}},
        ],
    }

    request = ChatRequest.from_dict(data)
    messages, params = request.split()

    assert messages[0].role == "developer"
    assert isinstance(messages[1].content[1], FileContentPart)
    assert isinstance(messages[1].content[1].file, InputFile)
    assert messages[1].content[1].file.file_id == "file-1"
    assert isinstance(messages[2].content[0], RefusalContentPart)
    assert messages[3].refusal == "Still no."
    assert isinstance(params.tools[0], ToolDefinition)
    assert params.tools[1:] == data["tools"][1:]  # other tools: as given
    sent = request.to_dict()
    assert sent["messages"] == data["messages"]
    assert sent["tools"][1:] == data["tools"][1:]


def test_a_content_part_type_that_is_not_a_string_is_refused_naming_it():
    raises_data_error(
        lambda: ChatMessage(role="user", content=[{"type": ["text"], "text": "hi"}]),
        "content[0].type: expected one of",
        param="content[0].type",
    )


def test_a_content_part_without_a_type_is_refused():
    raises_data_error(
        lambda: ChatMessage(role="user", content=[{"text": "hi"}]),
        "content[0].type: is required",
    )
