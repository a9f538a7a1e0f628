"""ResponsesAgent and ChatAgent models on every route, as clients see them: `/v1/responses`
natively (objects and events validated against OpenAI's spec), `/v1/chat/completions` by
translation, `/api/models/<name>/invocations` in the agent's own format; their usage counted as
a chat call's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatmodels import usage
from chatmodels.models import ModelVersion, UsageBucket
from tests import test_tracing
from tests.agent_models import (
    AsyncEchoAgent,
    BadEventAgent,
    BadOutputAgent,
    EchoAgent,
    EchoChatAgent,
    PlainAgent,
    WeatherAgent,
)
from tests.api import test_openai_spec
from tests.api.calls import COMPLETIONS, error_of, post, stream_events
from tests.api.test_metrics import increase, scrape
from tests.api.test_responses import RESPONSES, WEATHER_TOOL, response_events
from tests.helpers import make_key, register

pytestmark = pytest.mark.django_db

openai_spec = test_openai_spec.openai_spec
assert_matches = test_openai_spec.assert_matches
spans = test_tracing.spans


def _output_text(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def _chunk_text(events: list[Any]) -> str:
    return "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in events
        if chunk != "[DONE]" and chunk["choices"]
    )


def _streamed_response(client, assert_matches, body: dict[str, Any], key: str) -> dict[str, Any]:
    """The final response of a Responses stream, every event checked against the spec and
    numbered in order."""
    events = response_events(post(client, RESPONSES, {**body, "stream": True}, key=key))
    for event in events:
        assert_matches(event, "ResponseStreamEvent")
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    return events[-1]["response"]


def test_registration_detects_the_interface_and_generates_its_signature():
    version = register(name="echo-agent", model=EchoAgent)
    assert version.interface == ModelVersion.Interface.RESPONSES_AGENT
    assert version.input_example == {"input": [{"role": "user", "content": "Hello!"}]}
    assert "input" in version.signature["inputs"]["properties"]
    assert "output" in version.signature["outputs"]["properties"]
    chat_agent = register(name="chat-agent", model=EchoChatAgent)
    assert chat_agent.interface == ModelVersion.Interface.CHAT_AGENT
    assert chat_agent.input_example == {"messages": [{"role": "user", "content": "Hello!"}]}


def test_the_registry_api_says_which_interface_a_version_has(client):
    register(name="echo-agent", model=EchoAgent)
    _, key = make_key()
    response = client.get("/api/models/echo-agent/versions/1/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200, response.content
    assert response.json()["interface"] == "responses_agent"


def test_registration_refuses_an_agent_answer_mlflow_refuses():
    from chatmodels.exceptions import InvalidModelOutput

    with pytest.raises(InvalidModelOutput, match="Invalid type: not_an_item"):
        register(name="bad-agent", model=BadOutputAgent)
    assert not ModelVersion.objects.exists()


def test_responses_agent_answers_responses_natively(client, assert_matches):
    register(name="echo-agent", model=EchoAgent)
    _, key = make_key()
    body = {"model": "echo-agent", "input": "hello there", "instructions": "Be brief."}
    response = post(client, RESPONSES, body, key=key)
    assert response.status_code == 200, response.content
    answer = response.json()
    assert_matches(answer, "Response")
    assert answer["status"] == "completed"
    assert _output_text(answer) == "echo: hello there"
    assert answer["output"][0]["id"] == "msg_echo"
    # The instructions came first, as a system message: two input items.
    assert answer["custom_outputs"] == {"seen": 2}
    assert answer["usage"]["input_tokens"] == 3 and answer["usage"]["output_tokens"] == 2

    streamed = _streamed_response(client, assert_matches, body, key)
    assert _output_text(streamed) == "echo: hello there"
    assert [item["type"] for item in streamed["output"]] == ["message"]
    assert streamed["usage"]["output_tokens"] == 3


def test_responses_agent_tool_call_left_to_the_client(client, assert_matches):
    register(name="weather", model=WeatherAgent)
    _, key = make_key()
    body = {"model": "weather", "input": "Oslo", "tools": [WEATHER_TOOL]}
    answer = post(client, RESPONSES, body, key=key).json()
    assert_matches(answer, "Response")
    (call,) = answer["output"]
    assert call["type"] == "function_call"
    assert (call["call_id"], call["name"], json.loads(call["arguments"])) == (
        "call_1",
        "get_weather",
        {"city": "Oslo"},
    )
    streamed = _streamed_response(client, assert_matches, body, key)
    assert streamed["output"][0]["arguments"] == call["arguments"]

    # The client runs the tool and sends its output back: the agent answers with it.
    second = {
        "model": "weather",
        "input": [
            {"role": "user", "content": "Oslo"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather",
             "arguments": call["arguments"]},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
    }  # fmt: skip
    assert _output_text(post(client, RESPONSES, second, key=key).json()) == "It is sunny."


def test_responses_agent_on_chat_completions(client):
    register(name="echo-agent", model=EchoAgent)
    _, key = make_key()
    body = {"model": "echo-agent", "messages": [{"role": "user", "content": "hi you"}]}
    answer = post(client, COMPLETIONS, body, key=key).json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": "echo: hi you",
        "refusal": None,
    }
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}

    events = stream_events(
        post(
            client,
            COMPLETIONS,
            {**body, "stream": True, "stream_options": {"include_usage": True}},
            key=key,
        )
    )
    assert events[-1] == "[DONE]"
    assert _chunk_text(events[:-1]) == "echo: hi you"
    deltas = [e["choices"][0]["delta"].get("content") for e in events[:-1] if e["choices"]]
    assert deltas[:3] == ["echo:", " hi", " you"]  # the agent's deltas, one chunk each
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


def test_tool_calls_on_chat_completions(client):
    register(name="weather", model=WeatherAgent)
    _, key = make_key()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    body = {"model": "weather", "messages": [{"role": "user", "content": "Oslo"}], "tools": tools}
    choice = post(client, COMPLETIONS, body, key=key).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["id"] == "call_1" and call["function"]["name"] == "get_weather"

    events = stream_events(post(client, COMPLETIONS, {**body, "stream": True}, key=key))
    calls = [c for e in events[:-1] for c in e["choices"][0]["delta"].get("tool_calls") or ()]
    assert [(c["index"], c["id"], c["function"]["arguments"]) for c in calls] == [
        (0, "call_1", call["function"]["arguments"])
    ]
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"

    # The tool's result, as chat sends it back: the agent gets a function_call_output.
    body["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rainy"},
    ]
    answer = post(client, COMPLETIONS, body, key=key).json()
    assert answer["choices"][0]["message"]["content"] == "It is rainy."


def test_async_agent_with_reasoning(client, assert_matches):
    register(name="async-agent", model=AsyncEchoAgent)
    _, key = make_key()
    body = {"model": "async-agent", "input": "hey"}
    answer = post(client, RESPONSES, body, key=key).json()
    assert_matches(answer, "Response")
    assert [item["type"] for item in answer["output"]] == ["reasoning", "message"]
    streamed = _streamed_response(client, assert_matches, body, key)
    assert _output_text(streamed) == "async: hey"
    chat_body = {"model": "async-agent", "messages": [{"role": "user", "content": "x"}]}
    chat = post(client, COMPLETIONS, chat_body, key=key)
    assert chat.json()["choices"][0]["message"]["content"] == "async: x"


def test_agents_own_format_on_invocations(client):
    register(name="echo", model=EchoAgent)
    _, key = make_key()
    body = {"input": [{"role": "user", "content": "raw"}], "custom_inputs": {"a": 1}}
    answer = post(client, "/api/models/echo/invocations", body, key=key).json()
    # What MLflow's ResponsesAgent wrapper returns: model_dump(exclude_none=True).
    assert answer["output"] == [
        {
            "type": "message",
            "id": "msg_echo",
            "content": [{"text": "echo: raw", "type": "output_text", "annotations": []}],
            "role": "assistant",
        }
    ]
    assert answer["custom_outputs"] == {"seen": 1}
    events = stream_events(
        post(client, "/api/models/echo/invocations", {**body, "stream": True}, key=key)
    )
    assert events[-1] == "[DONE]"
    assert [e["type"] for e in events[:-1]] == [
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_item.done",
        "response.completed",
    ]
    # A chat request is not a ResponsesAgentRequest: 400 naming the field.
    error = error_of(post(client, "/api/models/echo/invocations", {"messages": []}, key=key), 400)
    assert error["param"] == "input"


def test_chat_agent_on_every_route(client, assert_matches):
    register(name="chat-agent", model=EchoChatAgent)
    _, key = make_key()
    messages = [{"role": "user", "content": "hello"}]
    # invocations: its own format, all its messages
    own = post(
        client,
        "/api/models/chat-agent/invocations",
        {"messages": messages, "context": {"user_id": "u1"}},
        key=key,
    ).json()
    assert [m["role"] for m in own["messages"]] == ["assistant", "tool", "assistant"]
    assert own["custom_outputs"] == {"user": "u1"}
    # chat completions: the final text; the tool it ran itself is not the client's to run
    body = {"model": "chat-agent", "messages": messages}
    answer = post(client, COMPLETIONS, body, key=key).json()
    assert answer["choices"][0]["message"]["content"] == "chat agent: hello"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in answer["choices"][0]["message"]
    events = stream_events(post(client, COMPLETIONS, {**body, "stream": True}, key=key))
    assert _chunk_text(events[:-1]) == "chat agent: hello "
    # responses: each step an output item
    response = post(client, RESPONSES, {"model": "chat-agent", "input": "hello"}, key=key).json()
    assert_matches(response, "Response")
    assert [item["type"] for item in response["output"]] == [
        "function_call",
        "function_call_output",
        "message",
    ]
    assert response["usage"]["total_tokens"] == 7
    streamed = _streamed_response(
        client, assert_matches, {"model": "chat-agent", "input": "hello"}, key
    )
    assert [item["type"] for item in streamed["output"]] == [
        "function_call",
        "function_call_output",
        "message",
    ]
    assert _output_text(streamed) == "chat agent: hello "


def test_agent_calls_are_counted_as_chat_calls(client):
    register(name="echo-agent", model=EchoAgent)
    api_key, key = make_key()
    post(client, RESPONSES, {"model": "echo-agent", "input": "a"}, key=key)
    response_events(
        post(client, RESPONSES, {"model": "echo-agent", "input": "a b", "stream": True}, key=key)
    )
    usage.flush()
    (row,) = UsageBucket.objects.filter(api_key=api_key)
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (2, 6, 2 + 3)


def test_agent_calls_are_measured_and_traced_as_chat_calls(client, spans):
    register(name="chat-agent", model=EchoChatAgent)
    _, key = make_key()
    before = scrape(client)
    post(client, RESPONSES, {"model": "chat-agent", "input": "hi"}, key=key)
    stream_events(
        post(
            client,
            COMPLETIONS,
            {
                "model": "chat-agent",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": True,
            },
            key=key,
        )
    )
    after = scrape(client)
    labels = {"model": "chat-agent", "version": "1"}
    assert increase(before, after, "chatmodels_requests_total", **labels, route="responses",
                    status="200") == 1  # fmt: skip
    assert increase(before, after, "chatmodels_requests_total", **labels,
                    route="chat-completions", status="200") == 1  # fmt: skip
    # Each call reported 4 prompt and 3 completion tokens.
    assert increase(before, after, "chatmodels_tokens_total", **labels, kind="prompt") == 8
    assert increase(before, after, "chatmodels_tokens_total", **labels, kind="completion") == 6
    traced = spans.get_finished_spans()
    assert [span.name for span in traced] == ["chat chat-agent", "chat chat-agent"]
    assert [span.attributes["gen_ai.usage.output_tokens"] for span in traced] == [3, 3]


def test_a_key_over_its_token_limit_is_refused_for_agents_too(client):
    from chatmodels import services

    register(name="echo-agent", model=EchoAgent)
    _, key = services.create_api_key(name="tight", tokens_per_minute=4)
    body = {"model": "echo-agent", "input": "a"}
    assert post(client, RESPONSES, body, key=key).status_code == 200  # 5 tokens: over now
    assert error_of(post(client, RESPONSES, body, key=key), 429)["code"] == "rate_limit_exceeded"


def test_an_agent_without_predict_stream_streams_its_one_answer(client, assert_matches):
    register(name="plain", model=PlainAgent)
    _, key = make_key()
    streamed = _streamed_response(client, assert_matches, {"model": "plain", "input": "x"}, key)
    assert [item["type"] for item in streamed["output"]] == [
        "function_call",
        "function_call_output",
        "message",
    ]
    assert _output_text(streamed) == "It is 42."
    assert streamed["custom_outputs"] == {"plain": True}
    # On chat, the call it answered itself is not left to the client.
    body = {"model": "plain", "messages": [{"role": "user", "content": "x"}], "stream": True}
    events = stream_events(post(client, COMPLETIONS, body, key=key))
    assert _chunk_text(events[:-1]) == "It is 42."
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["custom_outputs"] == {"plain": True}


def test_an_invalid_stream_event_ends_the_stream_with_an_error(client, assert_matches):
    register(name="bad-events", model=BadEventAgent)
    _, key = make_key()
    events = response_events(
        post(client, RESPONSES, {"model": "bad-events", "input": "x", "stream": True}, key=key)
    )
    for event in events:
        assert_matches(event, "ResponseStreamEvent")
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "invalid_model_output"
    assert "content" in events[-2]["message"]
    # What was streamed before is kept, marked incomplete.
    assert events[-1]["response"]["output"][0]["status"] == "incomplete"


def test_the_readme_agent_registers_and_answers_both_routes(client, tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    source = re.search(r"```python\n(# my_agent\.py\n.*?)```", readme, re.S).group(1)
    (tmp_path / "my_agent.py").write_text(source)
    version = register(name="readme-agent", model=f"{tmp_path / 'my_agent.py'}:Echo")
    assert version.interface == ModelVersion.Interface.RESPONSES_AGENT
    _, key = make_key()
    answer = post(client, RESPONSES, {"model": "readme-agent", "input": "hi there"}, key=key)
    assert _output_text(answer.json()) == "hi there"
    body = {"model": "readme-agent", "messages": [{"role": "user", "content": "hi there"}]}
    events = stream_events(post(client, COMPLETIONS, {**body, "stream": True}, key=key))
    assert _chunk_text(events[:-1]) == "hi there "
