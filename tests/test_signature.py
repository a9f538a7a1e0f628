"""The generated signature: valid JSON Schema that agrees with the chat types."""

from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator

from chatmodels import ChatRequest, ChatResponse
from chatmodels.exceptions import ChatDataError, RegistrationError, SignatureNotAllowed
from chatmodels.signature import (
    DEFAULT_INPUT_EXAMPLE,
    chat_signature,
    check_input_example,
    ensure_generated,
    signature_rows,
)


def validator(side: str) -> Draft202012Validator:
    return Draft202012Validator(chat_signature()[side])


def tool_call_response() -> dict:
    return ChatResponse(
        id="chatcmpl-1",
        model="m",
        choices=[
            {
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "call_1", "function": {"name": "f", "arguments": '{"x": 1}'}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        custom_outputs={"trace": "abc"},
    ).to_dict()


def test_signature_has_inputs_and_outputs_that_are_valid_json_schema():
    signature = chat_signature()

    assert set(signature) == {"inputs", "outputs"}
    for schema in signature.values():
        Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object"
    assert signature["inputs"]["required"] == ["messages"]
    assert signature["outputs"]["required"] == ["choices"]


def test_signature_is_plain_json():
    signature = chat_signature()

    assert json.loads(json.dumps(signature)) == signature


def test_each_call_returns_a_fresh_copy():
    first = chat_signature()
    first["inputs"]["properties"].clear()

    assert "messages" in chat_signature()["inputs"]["properties"]


def test_default_input_example_is_the_documented_one_and_validates():
    assert DEFAULT_INPUT_EXAMPLE == {
        "messages": [{"role": "user", "content": "Hello!"}],
        "temperature": 1.0,
        "max_tokens": 10,
        "stop": ["\n"],
        "n": 1,
        "stream": False,
    }
    assert list(validator("inputs").iter_errors(DEFAULT_INPUT_EXAMPLE)) == []
    assert ChatRequest.from_dict(DEFAULT_INPUT_EXAMPLE).messages[0].content == "Hello!"


def test_a_full_request_with_tools_and_content_parts_validates():
    request = ChatRequest(
        messages=[
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        ],
        tools=[{"function": {"name": "f", "parameters": {"properties": {}}}}],
        stop="END",
        custom_inputs={"k": 1},
    ).to_dict()

    assert list(validator("inputs").iter_errors(request)) == []


def test_an_openai_request_with_extra_keys_validates():
    request = {**DEFAULT_INPUT_EXAMPLE, "model": "gpt-4o", "user": "u1", "seed": 1}

    assert validator("inputs").is_valid(request)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"temperature": 1.0}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"content": "no role"}]}, "role"),
        ({"messages": [{"role": 1, "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "type"),
        ({**DEFAULT_INPUT_EXAMPLE, "temperature": "hot"}, "temperature"),
        ({**DEFAULT_INPUT_EXAMPLE, "temperature": -1}, "temperature"),
        ({**DEFAULT_INPUT_EXAMPLE, "n": 0}, "n"),
        ({**DEFAULT_INPUT_EXAMPLE, "max_tokens": "10"}, "max_tokens"),
        ({**DEFAULT_INPUT_EXAMPLE, "stop": 3}, "stop"),
        ({**DEFAULT_INPUT_EXAMPLE, "stream": "yes"}, "stream"),
        ({**DEFAULT_INPUT_EXAMPLE, "tools": {"function": {"name": "f"}}}, "tools"),
        ({**DEFAULT_INPUT_EXAMPLE, "tools": [{"type": "function"}]}, "function"),
    ],
)
def test_signature_and_types_both_reject_a_bad_request(bad, field):
    errors = list(validator("inputs").iter_errors(bad))

    assert errors, f"schema accepted {bad}"
    with pytest.raises(ChatDataError) as caught:
        ChatRequest.from_dict(bad)
    assert field in str(caught.value)


def test_a_real_chat_response_validates_against_the_output_schema():
    plain = ChatResponse(choices=[{"message": {"role": "assistant", "content": "hi"}}]).to_dict()

    assert list(validator("outputs").iter_errors(plain)) == []
    assert list(validator("outputs").iter_errors(tool_call_response())) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.pop("choices"),
        lambda r: r.update(choices="hi"),
        lambda r: r["choices"][0].pop("message"),
        lambda r: r["choices"][0]["message"].update(role=5),
        lambda r: r["choices"][0]["message"]["tool_calls"][0]["function"].pop("arguments"),
        lambda r: r.update(created="yesterday"),
        lambda r: r["usage"].update(total_tokens="5"),
    ],
)
def test_output_schema_rejects_a_bad_response(mutate):
    response = copy.deepcopy(tool_call_response())
    mutate(response)

    assert not validator("outputs").is_valid(response)
    with pytest.raises(ChatDataError):
        ChatResponse.from_dict(response)


def test_ensure_generated_accepts_no_signature():
    assert ensure_generated(None) is None


@pytest.mark.parametrize("signature", [chat_signature(), {}, {"inputs": {"type": "object"}}, ""])
def test_ensure_generated_refuses_any_caller_supplied_signature(signature):
    with pytest.raises(SignatureNotAllowed, match="generated automatically") as caught:
        ensure_generated(signature)
    assert isinstance(caught.value, RegistrationError)


def test_check_input_example_returns_the_request():
    example = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}

    request = check_input_example(example)

    assert isinstance(request, ChatRequest)
    assert request.max_tokens == 3
    assert check_input_example(DEFAULT_INPUT_EXAMPLE).stop == ["\n"]


@pytest.mark.parametrize(
    ("example", "fragments"),
    [
        (42, ["input example", "expected a JSON object", "int"]),
        ([{"role": "user"}], ["messages[0].content: is required"]),
        ("hello", ["input example", "expected a JSON object", "str"]),
        ({"temperature": 1.0}, ["messages: is required"]),
        ({"messages": [{"role": "user", "content": 3}]}, ["messages[0].content"]),
        ({**DEFAULT_INPUT_EXAMPLE, "n": "two"}, ["n: expected int"]),
        ({**DEFAULT_INPUT_EXAMPLE, "stream": True}, ["stream must be false"]),
    ],
)
def test_check_input_example_names_what_is_wrong(example, fragments):
    with pytest.raises(ChatDataError) as caught:
        check_input_example(example)
    for fragment in fragments:
        assert fragment in str(caught.value)


def rows_by_field(side: str) -> dict:
    return {row.field: row for row in signature_rows(chat_signature()[side])}


def test_signature_rows_list_top_level_fields_with_types_and_defaults():
    rows = rows_by_field("inputs")

    assert rows["messages"].required is True
    assert rows["messages"].type == "array of ChatMessage"
    assert rows["messages"].depth == 0
    assert rows["temperature"].required is False
    assert rows["temperature"].type == "number | null"  # null means the default
    assert rows["temperature"].default == "1.0"
    assert rows["max_tokens"].type == "integer | null"
    assert rows["max_tokens"].default == "null"
    assert rows["stream"].default == "false"
    assert rows["n"].default == "1"
    assert rows["stop"].type == "string | array of string | null"


def test_signature_rows_include_nested_fields():
    rows = rows_by_field("inputs")

    role = rows["messages[].role"]
    assert role.required is True
    assert role.type == "string"
    assert role.depth == 1
    assert "user" in role.description
    assert rows["messages[].content"].required is False
    assert rows["messages[].content[].type"].required is True
    assert rows["messages[].content[].image_url.url"].depth == 3
    assert rows["messages[].tool_calls[].function.arguments"].required is True
    assert rows["messages[].tool_calls[].type"].default == "function"
    assert rows["tools[].function.name"].required is True
    assert rows["tools[].function.strict"].default == "false"


def test_signature_rows_come_in_reading_order():
    fields = [row.field for row in signature_rows(chat_signature()["inputs"])]

    assert fields[0] == "messages"
    assert fields.index("messages") < fields.index("messages[].role") < fields.index("temperature")


def test_signature_rows_for_the_output():
    rows = rows_by_field("outputs")

    assert rows["choices"].required is True
    assert rows["choices[].message"].required is True
    assert rows["choices[].message.role"].required is True
    assert rows["choices[].finish_reason"].default == "stop"
    assert rows["usage.total_tokens"].type == "integer | null"
    assert rows["object"].default == "chat.completion"


def test_signature_rows_of_a_small_schema():
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "description": "first"},
            "b": {
                "type": "array",
                "items": {"type": "object", "properties": {"c": {"type": "integer"}}},
            },
        },
        "required": ["a"],
    }

    rows = signature_rows(schema)

    assert [(r.field, r.type, r.required, r.description) for r in rows] == [
        ("a", "string", True, "first"),
        ("b", "array of object", False, ""),
        ("b[].c", "integer", False, ""),
    ]
