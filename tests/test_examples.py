"""The examples: the echo model, and the OpenAI proxies (sync, async) against a local upstream."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.cache import cache

from chatmodels import ChatChunk
from chatmodels.packaging import build_package, load_target, open_package, validate_model
from chatmodels.serving import runtime
from chatmodels.signature import DEFAULT_INPUT_EXAMPLE, chat_signature
from chatmodels.types import ChatRequest
from tests.api.calls import completion_text, error_of, post, stream_events
from tests.helpers import chat, make_key, register
from tests.upstream import Upstream

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def package_and_open(target: str, work_dir: Path, **options):
    """What registration does: load the target, build its package, open it from the bytes."""
    model = load_target(target)()
    built = build_package(
        model, input_example=DEFAULT_INPUT_EXAMPLE, signature=chat_signature(), **options
    )
    return open_package(built.data, expected_digest=built.digest, work_dir=work_dir)


def request(text: str, **params):
    return ChatRequest.from_dict({"messages": [{"role": "user", "content": text}], **params})


# ---------------------------------------------------------------------------------------------
# examples/echo.py


def test_echo_example_registers_and_answers(tmp_path):
    loaded = package_and_open(f"{EXAMPLES / 'echo.py'}:EchoModel", tmp_path)

    response = validate_model(loaded, DEFAULT_INPUT_EXAMPLE)

    assert type(loaded.model).__name__ == "EchoModel"
    assert response.choices[0].message.content == "Hello!"
    assert response.usage.total_tokens == 2


def test_echo_example_streams_word_by_word(tmp_path):
    loaded = package_and_open(f"{EXAMPLES / 'echo.py'}:EchoModel", tmp_path)
    messages, params = request("one two three").split()

    chunks = list(loaded.model.predict_stream(loaded.context, messages, params))

    assert loaded.streams is True
    assert all(isinstance(chunk, ChatChunk) for chunk in chunks)
    assert [c.choices[0].delta.content for c in chunks] == ["one", " two", " three", None]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.to_dict() == {
        "prompt_tokens": 3,
        "completion_tokens": 3,
        "total_tokens": 6,
    }


def test_echo_example_counts_the_words_of_every_message_as_its_usage(tmp_path):
    loaded = package_and_open(f"{EXAMPLES / 'echo.py'}:EchoModel", tmp_path)
    messages, params = ChatRequest.from_dict(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "say it back"},
            ]
        }
    ).split()

    response = loaded.model.predict(loaded.context, messages, params)

    assert response.usage.to_dict() == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
    }


def test_echo_example_reads_text_content_parts(tmp_path):
    loaded = package_and_open(f"{EXAMPLES / 'echo.py'}:EchoModel", tmp_path)
    messages, params = ChatRequest.from_dict(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                        {"type": "text", "text": "here"},
                    ],
                }
            ]
        }
    ).split()

    response = loaded.model.predict(loaded.context, messages, params)

    assert response.choices[0].message.content == "look here"


# ---------------------------------------------------------------------------------------------
# examples/upstream_model.py: a custom model on the worker's HTTP client, served for real

POLITE = f"{EXAMPLES / 'upstream_model.py'}:PoliteModel"
COMPLETIONS = "/v1/chat/completions"


@pytest.fixture
def upstream():
    with Upstream() as server:
        yield server


@pytest.fixture
def polite(db, upstream):
    """polite/1 registered through the service (its save-time predict runs in a worker)."""
    runtime.stop_workers()
    cache.clear()
    version = register(
        name="polite",
        model=POLITE,
        model_config={"base_url": upstream.base_url, "model": "up", "system": "Be nice."},
    )
    yield version
    runtime.stop_workers()
    cache.clear()


def test_upstream_example_adds_its_system_prompt_and_forwards(client, polite, upstream):
    key = make_key(name="polite-caller")[1]

    response = post(client, COMPLETIONS, chat("hi", model="polite", min_p=0.1), key=key)

    assert completion_text(response) == "up heard: hi"
    sent = upstream.requests[-1]["body"]
    assert sent["messages"] == [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "hi"},
    ]
    assert sent["min_p"] == 0.1 and "extra" not in sent and "custom_inputs" not in sent


def test_upstream_example_streams_and_passes_upstream_errors_on(client, polite, upstream):
    key = make_key(name="polite-caller")[1]

    events = stream_events(
        post(client, COMPLETIONS, chat("a b", model="polite", stream=True), key=key)
    )
    refused = post(client, COMPLETIONS, chat("fail", model="polite"), key=key)

    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "up heard: a b "
    assert "slow down" in error_of(refused, 429)["message"]


# ---------------------------------------------------------------------------------------------
# examples/openai_sdk_model.py: the openai SDK on its aiohttp transport, in a model worker

SDK_MODEL = f"{EXAMPLES / 'openai_sdk_model.py'}:OpenAISDKModel"


def test_sdk_example_answers_streams_and_keeps_a_429(client, db, upstream):
    runtime.stop_workers()
    cache.clear()
    register(
        name="sdk", model=SDK_MODEL, model_config={"base_url": upstream.base_url, "model": "up"}
    )
    key = make_key(name="sdk-caller")[1]
    try:
        answer = post(client, COMPLETIONS, chat("hi", model="sdk", min_p=0.1), key=key)
        events = stream_events(
            post(client, COMPLETIONS, chat("a b", model="sdk", stream=True), key=key)
        )
        refused = post(client, COMPLETIONS, chat("fail", model="sdk"), key=key)
    finally:
        runtime.stop_workers()

    assert completion_text(answer) == "up heard: hi"
    assert upstream.requests[-3]["body"]["min_p"] == 0.1
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "up heard: a b "
    assert refused.status_code == 429 and refused["Retry-After"] == "7"
