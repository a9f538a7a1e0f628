"""Real clients of the Responses API against a live server, unchanged: the `openai` SDK,
LangChain's `ChatOpenAI(use_responses_api=True)` and the OpenAI Agents SDK."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.helpers import make_key, register
from tests.sample_models import PrefixModel, StreamingModel, ToolRoundTripModel

# live_server serves from another thread: the data must be committed to be seen.
pytestmark = pytest.mark.django_db(transaction=True)

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


@pytest.fixture
def models(db):
    register(name="echo", model=PrefixModel("v1:"), aliases=["prod"])
    register(name="tools", model=ToolRoundTripModel())
    register(name="streamer", model=StreamingModel())


@pytest.fixture
def api_key(models) -> str:
    return make_key(name="clients")[1]


@pytest.fixture
def base_url(live_server) -> str:
    return live_server.url + "/v1"


@pytest.fixture
def client(base_url, api_key):
    # Closed after the test: an open keep-alive connection would hold a server thread.
    with OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=20) as sdk:
        yield sdk


# --- the openai SDK ----------------------------------------------------------------------------


def test_sdk_creates_a_response(client):
    response = client.responses.create(model="echo@prod", input="hello")

    assert response.output_text == "v1:hello"
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.model == "echo@prod"
    assert response.usage.input_tokens == 1 and response.usage.total_tokens == 2


def test_sdk_streams_a_response(client):
    events = list(client.responses.create(model="tools", input="hello big world", stream=True))

    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert deltas == ["hello", " big", " world"]
    final = events[-1].response
    assert final.output_text == "hello big world"
    assert final.usage.output_tokens == 3
    assert [event.sequence_number for event in events] == list(range(len(events)))


def test_sdk_stream_helper_gathers_the_final_response(client):
    with client.responses.stream(model="tools", input="one two") as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert "".join(texts) == "one two"
    assert final.output_text == "one two"


def test_sdk_function_tool_round_trip(client):
    first = client.responses.create(model="tools", input="Paris", tools=[WEATHER_TOOL])

    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    city = json.loads(call.arguments)["city"]
    follow_up = [
        {"role": "user", "content": "Paris"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": f"sunny in {city}"},
    ]
    second = client.responses.create(model="tools", input=follow_up, tools=[WEATHER_TOOL])

    assert second.output_text == "The tool said: sunny in Paris"


def test_sdk_streamed_tool_call(client):
    events = list(
        client.responses.create(model="tools", input="Rome", tools=[WEATHER_TOOL], stream=True)
    )

    (done,) = [event for event in events if event.type == "response.function_call_arguments.done"]
    assert json.loads(done.arguments) == {"city": "Rome"}
    (call,) = events[-1].response.output
    assert call.call_id == "call_rt_1" and call.arguments == done.arguments


def test_sdk_sees_errors_as_typed_exceptions(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="echo", input="hi", previous_response_id="resp_123")
    assert raised.value.param == "previous_response_id"

    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi")


def test_sdk_sees_a_failure_midway_as_error_and_response_failed(client):
    events = list(client.responses.create(model="streamer", input="raise now", stream=True))

    assert [event.type for event in events[-2:]] == ["error", "response.failed"]
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.code == "server_error"


# --- LangChain ---------------------------------------------------------------------------------


@pytest.fixture
def langchain_model(base_url, api_key):
    from langchain_openai import ChatOpenAI

    def make(model: str) -> ChatOpenAI:
        return ChatOpenAI(
            model=model, base_url=base_url, api_key=api_key, use_responses_api=True, max_retries=0
        )

    return make


def test_langchain_invokes_and_streams(langchain_model):
    llm = langchain_model("tools")

    answer = llm.invoke("hello there")
    pieces = [chunk.text for chunk in llm.stream("one two three")]

    assert answer.text == "hello there"
    assert answer.usage_metadata["total_tokens"] == 4
    assert "".join(pieces) == "one two three"


def test_langchain_tool_round_trip(langchain_model):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    llm = langchain_model("tools").bind_tools([get_weather])
    question = HumanMessage("Paris")

    asked = llm.invoke([question])
    (call,) = asked.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    answer = langchain_model("tools").invoke([question, asked, result])

    assert answer.text == "The tool said: sunny in Paris"


# --- the OpenAI Agents SDK ---------------------------------------------------------------------


def test_an_agent_with_a_function_tool_runs_against_the_server(base_url, api_key):
    from agents import (
        Agent,
        Runner,
        function_tool,
        set_default_openai_api,
        set_default_openai_client,
        set_tracing_disabled,
    )

    calls = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    async def run() -> tuple[str, str]:
        async with AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0) as client:
            set_default_openai_client(client, use_for_tracing=False)
            set_default_openai_api("responses")
            set_tracing_disabled(True)  # no trace is sent anywhere
            agent = Agent(
                name="weather",
                instructions="Answer with the tool.",
                model="tools",
                tools=[get_weather],
            )
            result = await Runner.run(agent, "Paris")
            streamed = Runner.run_streamed(agent, "Oslo")
            async for _event in streamed.stream_events():
                pass
            return result.final_output, streamed.final_output

    answer, streamed_answer = asyncio.run(run())

    assert calls == ["Paris", "Oslo"]
    assert answer == "The tool said: sunny in Paris"
    assert streamed_answer == "The tool said: sunny in Oslo"
