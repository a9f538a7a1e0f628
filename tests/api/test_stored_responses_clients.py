"""Stored responses and conversations through the production server (two worker processes, so
the next request may land on another process than the one that stored), with real clients: the
OpenAI Agents SDK continuing with `previous_response_id` and with a `conversation`, and the
`openai` SDK's `responses.retrieve`, `delete`, `input_items.list` and `conversations`."""

from __future__ import annotations

import asyncio

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.live import deployment, poll

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with deployment(tmp_path_factory.mktemp("stored")) as installation:
        installation.manage("register_model", "memory", "tests/memory_models.py:Memory")
        installation.manage("register_model", "ticker", "tests/server_models.py:AsyncTicker")
        installation.key = installation.create_api_key("agents")
        installation.other_key = installation.create_api_key("someone-else")
        installation.url = installation.start_server("stored", workers=2)
        yield installation


@pytest.fixture
def client(server):
    with OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=30) as sdk:
        yield sdk


def _run_agent(server, turns: list[str], *, conversation_id: str | None = None) -> list[str]:
    """Run the agent once per turn; each turn continues the last (`previous_response_id`) or
    the conversation. The last turn is streamed."""
    from agents import (
        Agent,
        Runner,
        function_tool,
        set_default_openai_api,
        set_default_openai_client,
        set_tracing_disabled,
    )

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    async def run() -> list[str]:
        answers = []
        async with AsyncOpenAI(
            base_url=server.url + "/v1", api_key=server.key, max_retries=0
        ) as sdk:
            set_default_openai_client(sdk, use_for_tracing=False)
            set_default_openai_api("responses")
            set_tracing_disabled(True)
            agent = Agent(name="weather", model="memory", tools=[get_weather])
            previous = None
            for index, turn in enumerate(turns):
                if conversation_id is not None:
                    continued = {"conversation_id": conversation_id}
                else:
                    continued = {"previous_response_id": previous}
                if index == len(turns) - 1:
                    streamed = Runner.run_streamed(agent, turn, **continued)
                    async for _event in streamed.stream_events():
                        pass
                    answers.append(streamed.final_output)
                    previous = streamed.last_response_id
                else:
                    result = await Runner.run(agent, turn, **continued)
                    answers.append(result.final_output)
                    previous = result.last_response_id
        return answers

    return asyncio.run(run())


def test_an_agent_continues_with_previous_response_id(server):
    answers = _run_agent(server, ["Paris", "Oslo"])

    # Each turn called the tool, then answered from its result, seeing every earlier turn.
    assert answers == [
        "tool said sunny in Paris; users: Paris",
        "tool said sunny in Oslo; users: Paris, Oslo",
    ]


def test_an_agent_continues_a_conversation(server, client):
    conversation = client.conversations.create(metadata={"topic": "weather"})

    answers = _run_agent(server, ["Rome", "Lima"], conversation_id=conversation.id)

    assert answers == [
        "tool said sunny in Rome; users: Rome",
        "tool said sunny in Lima; users: Rome, Lima",
    ]
    items = client.conversations.items.list(conversation.id, order="asc").data
    kinds = [item.type for item in items]
    assert kinds == ["message", "function_call", "function_call_output", "message"] * 2
    assert [item.role for item in items if item.type == "message"] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


def test_the_sdk_retrieves_lists_and_deletes_a_stored_response(client):
    first = client.responses.create(model="memory", input="one")
    second = client.responses.create(
        model="memory",
        previous_response_id=first.id,
        input=[{"role": "user", "content": "two"}, {"role": "user", "content": "three"}],
    )

    assert second.output_text == "users: one, two, three"
    retrieved = client.responses.retrieve(second.id)
    assert retrieved.id == second.id and retrieved.output_text == second.output_text
    assert retrieved.previous_response_id == first.id
    items = client.responses.input_items.list(second.id, order="asc", limit=1)
    assert [item.content[0].text for item in items.data] == ["two"]
    assert items.has_more is True
    every = [
        item.content[0].text
        for item in client.responses.input_items.list(second.id, order="asc", limit=1)
    ]
    assert every == ["two", "three"]  # the SDK followed `after` through both pages

    client.responses.delete(second.id)

    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)
    assert client.responses.retrieve(first.id).output_text == "users: one"


def test_the_sdk_manages_conversations_and_their_items(client):
    created = client.conversations.create(items=[{"role": "user", "content": "hello"}])
    assert client.conversations.retrieve(created.id).id == created.id

    added = client.conversations.items.create(
        created.id, items=[{"type": "message", "role": "user", "content": "again"}]
    )
    (item,) = added.data
    assert client.conversations.items.retrieve(item.id, conversation_id=created.id).id == item.id
    answer = client.responses.create(model="memory", input="now", conversation=created.id)
    assert answer.output_text == "users: hello, again, now"

    updated = client.conversations.update(created.id, metadata={"state": "done"})
    assert updated.metadata == {"state": "done"}
    client.conversations.items.delete(item.id, conversation_id=created.id)
    texts = [i.content[0].text for i in client.conversations.items.list(created.id, order="asc")]
    assert texts == ["hello", "now", "users: hello, again, now"]
    client.conversations.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(created.id)


def test_another_key_gets_404(server, client):
    stored = client.responses.create(model="memory", input="mine")
    conversation = client.conversations.create()

    with OpenAI(base_url=server.url + "/v1", api_key=server.other_key, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(stored.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(stored.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.input_items.list(stored.id)
        with pytest.raises(openai.NotFoundError):
            other.conversations.retrieve(conversation.id)
        with pytest.raises(openai.BadRequestError):
            other.responses.create(model="memory", input="x", previous_response_id=stored.id)


def test_a_stream_cut_short_by_its_client_is_stored_as_cancelled(client):
    stream = client.responses.create(model="ticker", input="tick", stream=True)
    response_id = None
    for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
        if event.type == "response.output_text.delta":
            break
    stream.close()  # the client goes away mid-stream

    def status():
        try:
            return client.responses.retrieve(response_id)
        except openai.NotFoundError:
            return None

    stored = poll(status, until=lambda found: found is not None)
    assert stored is not None and stored.status == "cancelled"
    (message,) = stored.output
    assert message.status == "incomplete" and message.content[0].text.startswith("0 ")
