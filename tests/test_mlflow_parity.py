"""MLflow 3 parity: one test per difference found between our types and MLflow 3.17's, written
from MLflow's documented behaviour (`mlflow.types.llm`, `mlflow.pyfunc.ChatModel`, its loader).

An MLflow ChatModel ports by changing its imports; tests/mlflow_parity/ runs example models under
both (when an MLflow Python is at hand) and checks the answers are the same.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from django.core.cache import cache

from chatmodels import (
    ChatChoice,
    ChatChoiceDelta,
    ChatChunk,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatMessage,
    ChatModel,
    ChatParams,
    ChatRequest,
    ChatResponse,
    FunctionToolCallArguments,
    FunctionToolDefinition,
    ParamProperty,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    ToolParamsSchema,
)
from chatmodels.exceptions import ChatDataError
from chatmodels.models import ModelVersion
from chatmodels.packaging import takes_context
from chatmodels.serving import runtime
from tests.api.calls import completion_text, error_of, post, stream_events
from tests.helpers import chat, make_key, register

COMPLETIONS = "/v1/chat/completions"


@pytest.fixture(autouse=True)
def _fresh_process_state():
    runtime.stop_workers()
    cache.clear()
    yield
    runtime.stop_workers()
    cache.clear()


@pytest.fixture
def key(db) -> str:
    return make_key(name="parity")[1]


def reply(text: str, **extra) -> ChatResponse:
    return ChatResponse(
        choices=[ChatChoice(message=ChatMessage(role="assistant", content=text))], **extra
    )


# ---------------------------------------------------------------------------------------------
# 1. predict(self, messages, params) without context (MLflow >= 2.20)


class ContextlessModel(ChatModel):
    def predict(self, messages, params):
        return reply(f"{len(messages)} message(s) at temperature {params.temperature}")

    def predict_stream(self, messages, params):
        for word in ["no", " context"]:
            yield ChatChunk(choices=[ChatChunkChoice(delta=ChatChoiceDelta(content=word))])


class AsyncContextlessModel(ChatModel):
    async def predict(self, messages, params):
        return reply("async, no context")

    async def predict_stream(self, messages, params):
        yield ChatChunk(choices=[ChatChunkChoice(delta=ChatChoiceDelta(content="async"))])


@pytest.mark.parametrize(
    ("model", "answer", "streamed"),
    [
        (ContextlessModel, "1 message(s) at temperature 0.5", ["no", " context"]),
        (AsyncContextlessModel, "async, no context", ["async"]),
    ],
)
def test_context_less_predict_registers_answers_and_streams(client, key, model, answer, streamed):
    register(name="contextless", model=model)

    response = post(client, COMPLETIONS, chat(model="contextless", temperature=0.5), key=key)
    events = stream_events(
        post(client, COMPLETIONS, chat(model="contextless", stream=True), key=key)
    )

    assert completion_text(response) == answer
    assert [event["choices"][0]["delta"].get("content") for event in events[:-1]] == streamed


def test_takes_context_follows_mlflows_rule():
    class Model:
        def with_context(self, context, messages, params): ...
        def named_context(self, messages, params, context=None): ...
        def without(self, messages, params): ...
        def star_args(self, *args): ...

    model = Model()

    assert takes_context(model.with_context)
    assert takes_context(model.named_context)
    assert not takes_context(model.without)
    assert takes_context(model.star_args)


# ---------------------------------------------------------------------------------------------
# 2. ToolParamsSchema.properties values are ParamProperty, with nested items


def test_tool_parameters_become_param_properties_with_nested_items():
    params = ChatParams.from_dict(
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "tag",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "city": {"type": "string", "description": "City name"},
                                "grid": {
                                    "type": "array",
                                    "items": {"type": "array", "items": {"type": "integer"}},
                                },
                                "unit": {"type": "string", "enum": ["c", "f"]},
                            },
                            "required": ["city"],
                        },
                    },
                }
            ]
        }
    )

    properties = params.tools[0].function.parameters.properties
    assert all(isinstance(value, ParamProperty) for value in properties.values())
    assert properties["city"].type == "string"
    assert properties["city"].description == "City name"
    assert properties["grid"].items.type == "array"
    assert isinstance(properties["grid"].items.items, ParamProperty)
    assert properties["grid"].items.items.type == "integer"
    assert properties["unit"].enum == ["c", "f"]


def test_param_property_takes_a_nested_param_property_and_round_trips():
    prop = ParamProperty(type="array", items=ParamProperty(type="array", items={"type": "string"}))
    schema = ToolParamsSchema(properties={"rows": prop})

    assert isinstance(prop.items.items, ParamProperty)
    assert schema.to_dict() == {
        "properties": {
            "rows": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}
        },
        "type": "object",
    }
    assert ToolParamsSchema.from_dict(schema.to_dict()) == schema


def test_json_schema_keywords_beyond_mlflows_four_are_kept_for_the_model():
    # A proxy forwards the tool schema upstream: nested objects and constraints must survive.
    given = {
        "type": "object",
        "properties": {
            "address": {
                "type": "object",
                "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["zip"],
            },
            "age": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
        },
        "required": ["address"],
        "$defs": {"unused": {"type": "string"}},
    }

    schema = ToolParamsSchema.from_dict(given)

    assert schema.properties["address"].type == "object"
    assert schema.properties["age"].type is None
    assert schema.to_dict() == given


def test_param_property_type_must_be_a_json_schema_type():
    with pytest.raises(ChatDataError, match="type"):
        ParamProperty(type="text")


# ---------------------------------------------------------------------------------------------
# 3. FunctionToolCallArguments.to_tool_call(id=None)


def test_to_tool_call_makes_a_tool_call_with_a_new_or_given_id():
    arguments = FunctionToolCallArguments(name="get_weather", arguments='{"city": "Oslo"}')

    generated = arguments.to_tool_call()
    given = arguments.to_tool_call(id="call_1")

    assert isinstance(generated, ToolCall) and generated.function is arguments
    assert generated.id and generated.type == "function"
    assert arguments.to_tool_call().id != generated.id
    assert given.id == "call_1"


# ---------------------------------------------------------------------------------------------
# 4. ChatChunk.custom_outputs (MLflow 3's ChatCompletionChunk has it)


class CustomOutputsStreamModel(ChatModel):
    def predict(self, context, messages, params):
        return reply("whole", custom_outputs={"trace": "t-1"})

    def predict_stream(self, context, messages, params):
        yield ChatCompletionChunk(
            choices=[ChatChunkChoice(delta=ChatChoiceDelta(content="part"))],
            custom_outputs={"trace": "t-1", "step": None},
        )
        yield ChatCompletionChunk(
            choices=[ChatChunkChoice(delta=ChatChoiceDelta(), finish_reason="stop")]
        )


def test_chunk_carries_custom_outputs_and_the_stream_sends_them(client, key):
    chunk = ChatChunk(choices=[], custom_outputs={"a": 1})
    register(name="custom-stream", model=CustomOutputsStreamModel)

    events = stream_events(
        post(client, COMPLETIONS, chat(model="custom-stream", stream=True), key=key)
    )

    assert chunk.to_dict()["custom_outputs"] == {"a": 1}
    assert events[0]["custom_outputs"] == {"trace": "t-1", "step": None}
    assert "custom_outputs" not in events[1]
    assert events[-1] == "[DONE]"


# ---------------------------------------------------------------------------------------------
# 5. ChatChoiceDelta(tool_calls=[ToolCall(...)]), ChatParams.keys(), None kept in custom dicts


class ToolCallDeltaModel(ChatModel):
    def predict(self, context, messages, params):
        return reply("unused")

    def predict_stream(self, context, messages, params):
        call = FunctionToolCallArguments(name="get_weather", arguments="{}").to_tool_call("c1")
        yield ChatChunk(choices=[ChatChunkChoice(delta=ChatChoiceDelta(tool_calls=[call]))])
        yield ChatChunk(
            choices=[ChatChunkChoice(delta=ChatChoiceDelta(), finish_reason="tool_calls")]
        )


def test_a_delta_takes_whole_tool_calls_and_streams_them_with_their_index(client, key):
    call = ToolCall(id="c1", function=FunctionToolCallArguments(name="f", arguments="{}"))
    delta = ChatChoiceDelta(tool_calls=[call])
    register(name="delta-tools", model=ToolCallDeltaModel)

    events = stream_events(
        post(client, COMPLETIONS, chat(model="delta-tools", stream=True), key=key)
    )

    assert delta.tool_calls == [
        ToolCallDelta(index=0, id="c1", type="function", function={"name": "f", "arguments": "{}"})
    ]
    assert events[0]["choices"][0]["delta"]["tool_calls"] == [
        {
            "index": 0,
            "id": "c1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"},
        }
    ]
    assert events[1]["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_params_keys_are_its_field_names():
    assert {
        "temperature",
        "max_tokens",
        "stop",
        "n",
        "stream",
        "top_p",
        "top_k",
        "frequency_penalty",
        "presence_penalty",
        "custom_inputs",
        "tools",
    } <= ChatParams.keys()
    assert ChatParams.keys() == {field.name for field in dataclasses.fields(ChatParams)}


def test_to_dict_keeps_none_inside_custom_inputs_and_custom_outputs():
    params = ChatParams(custom_inputs={"kept": None, "nested": {"also": None}})
    response = reply("hi", custom_outputs={"kept": None})

    assert params.to_dict()["custom_inputs"] == {"kept": None, "nested": {"also": None}}
    assert response.to_dict()["custom_outputs"] == {"kept": None}
    assert "usage" not in response.to_dict()  # None fields of the types themselves are left out


# ---------------------------------------------------------------------------------------------
# 6. Validation as strict as MLflow's


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: ChatMessage(role="user"), "content: is required unless"),
        (lambda: ChatMessage(role="assistant", content="a", refusal="b"), "cannot both be set"),
        (
            lambda: ChatChoiceDelta(content="a", refusal="b"),
            "content and refusal cannot both be set",
        ),
        (
            lambda: ChatRequest(messages=[ChatMessage(role="user", content="a"), {"role": "user"}]),
            "messages: expected all items to be ChatMessage objects or all dicts",
        ),
        (lambda: ChatParams(custom_inputs={1: "one"}), "custom_inputs: expected str keys"),
    ],
)
def test_validation_refuses_what_mlflow_refuses(build, fragment):
    with pytest.raises(ChatDataError, match=fragment):
        build()


@pytest.mark.parametrize(
    "message",
    [
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "assistant", "refusal": "I can't help with that."},
        {"role": "assistant", "content": "", "refusal": "No."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ],
)
def test_validation_accepts_what_mlflow_accepts(message):
    assert ChatMessage.from_dict(message).role == message["role"]


def test_a_message_without_content_is_a_400_naming_the_field(client, key):
    register(name="contextless", model=ContextlessModel)
    body = {"model": "contextless", "messages": [{"role": "user"}]}

    error = error_of(post(client, COMPLETIONS, body, key=key), 400)

    assert error["param"] == "messages[0].content"
    assert "required" in error["message"]


# ---------------------------------------------------------------------------------------------
# 7. register takes an input example as a dict, (messages, params) or a list of ChatMessage


@pytest.mark.parametrize(
    ("example", "stored"),
    [
        (
            {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2},
            {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2},
        ),
        (
            ([ChatMessage(role="user", content="Hi")], {"temperature": 0.2}),
            {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2},
        ),
        (
            ({"messages": [{"role": "user", "content": "Hi"}]}, {"max_tokens": 5}),
            {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5},
        ),
        (
            [ChatMessage(role="system", content="Be brief."), {"role": "user", "content": "Hi"}],
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                ]
            },
        ),
    ],
)
def test_register_takes_every_input_example_form_mlflow_takes(db, example, stored):
    version = register(name="contextless", model=ContextlessModel, input_example=example)

    assert ModelVersion.objects.get(pk=version.pk).input_example == stored
    assert json.loads(json.dumps(stored)) == stored


def test_register_names_what_is_wrong_in_a_pair_example(db):
    from chatmodels.exceptions import RegistrationError

    with pytest.raises(RegistrationError, match="temperature: expected number"):
        register(
            name="contextless",
            model=ContextlessModel,
            input_example=([{"role": "user", "content": "Hi"}], {"temperature": "hot"}),
        )


def test_tool_definitions_accept_mlflows_construction():
    tool = FunctionToolDefinition(
        name="get_weather",
        parameters=ToolParamsSchema(properties={"city": ParamProperty(type="string")}),
    ).to_tool_definition()

    assert isinstance(tool, ToolDefinition)
    assert tool.function.parameters.properties["city"].type == "string"
