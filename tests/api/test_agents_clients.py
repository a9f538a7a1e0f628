"""A ChatModel, a ResponsesAgent and a ChatAgent each answer both `/v1/chat/completions` and
`/v1/responses`, streaming and not, through the production server (`scripts/server`, the models
registered with the `register_model` command) with the real `openai` SDK; every object and event
as sent (the SDK's `to_dict()`: what the JSON held) validates against OpenAI's spec."""

from __future__ import annotations

from typing import Any

import pytest
from openai import DefaultHttpxClient, OpenAI

from tests.api import test_openai_spec
from tests.live import ROOT, deployment

pytestmark = pytest.mark.slow

openai_spec = test_openai_spec.openai_spec
assert_matches = test_openai_spec.assert_matches

# model name → the text it answers "hello world" with
EXPECTED = {
    "chat-model": "hello world ",
    "responses-agent": "echo: hello world",
    "chat-agent": "chat agent: hello world ",
}


# model name → the class registered under it (`register_model NAME file.py:Class`)
TARGETS = {
    "chat-model": "tests/sample_models.py:StreamingModel",
    "responses-agent": "tests/agent_models.py:EchoAgent",
    "chat-agent": "tests/agent_models.py:EchoChatAgent",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    directory = tmp_path_factory.mktemp("agents-live")
    with deployment(directory) as installation:
        for name, target in TARGETS.items():
            installation.manage("register_model", name, str(ROOT / target))
        server = installation.start_server("web", workers=1)
        key = installation.create_api_key()
        with OpenAI(
            base_url=f"{server}/v1",
            api_key=key,
            max_retries=0,
            http_client=DefaultHttpxClient(trust_env=False, timeout=30),  # loopback: no proxy
        ) as sdk:
            yield sdk


def _chat_text(completion: Any) -> str:
    return completion.choices[0].message.content


@pytest.mark.parametrize("model", list(EXPECTED))
def test_chat_completions(client, assert_matches, model):
    messages = [{"role": "user", "content": "hello world"}]
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
    assert_matches(raw.http_response.json(), "CreateChatCompletionResponse")
    completion = raw.parse()
    assert completion.choices[0].message.content.strip() == EXPECTED[model].strip()
    assert completion.choices[0].finish_reason == "stop"

    text = ""
    with client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    ) as stream:
        for chunk in stream:
            assert_matches(chunk.to_dict(), "CreateChatCompletionStreamResponse")
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    assert text.strip() == EXPECTED[model].strip()


@pytest.mark.parametrize("model", list(EXPECTED))
def test_responses(client, assert_matches, model):
    raw = client.responses.with_raw_response.create(model=model, input="hello world")
    assert_matches(raw.http_response.json(), "Response")
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text.strip() == EXPECTED[model].strip()

    kinds = []
    with client.responses.create(model=model, input="hello world", stream=True) as stream:
        for event in stream:
            assert_matches(event.to_dict(), "ResponseStreamEvent")
            kinds.append(event.type)
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds

    # The SDK's own stream helper puts the events together into the same response.
    with client.responses.stream(model=model, input="hello world") as stream:
        final = stream.get_final_response()
    assert final.output_text.strip() == EXPECTED[model].strip()
