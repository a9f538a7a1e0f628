"""Streamed invocations: chunks, then `[DONE]`; usage chunks; errors mid-stream."""

from __future__ import annotations

import json

import pytest

from tests.api.calls import COMPLETIONS, error_of, post, stream_events
from tests.helpers import chat, register
from tests.sample_models import (
    BadChunkStreamingModel,
    ContentPartsModel,
    PartialUsageModel,
    StreamingModel,
    ToolCallingModel,
    TriggerModel,
)

pytestmark = pytest.mark.django_db


def _chunks(events):
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks and all(isinstance(chunk, dict) for chunk in chunks)
    return chunks


def _content(chunks) -> str:
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


def test_stream_from_predict_stream_sends_chunks_then_done(client, key):
    register(name="streamer", model=StreamingModel())

    response = post(
        client, COMPLETIONS, chat("hello big world", model="streamer", stream=True), key=key
    )

    assert response.streaming
    assert response["Cache-Control"] == "no-cache"
    chunks = _chunks(stream_events(response))
    assert len(chunks) == 4  # three words, then the finish
    assert _content(chunks) == "hello big world "
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert {chunk["model"] for chunk in chunks} == {"streamer"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert len({chunk["created"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None, None, None, "stop"]
    assert all("usage" not in chunk for chunk in chunks)


def test_stream_of_a_model_without_predict_stream_is_one_chunk_of_predict(client, key):
    register(name="plain", model=TriggerModel())

    response = post(client, "/api/models/plain/invocations", chat("hi", stream=True), key=key)

    chunks = _chunks(stream_events(response))
    assert len(chunks) == 1
    (choice,) = chunks[0]["choices"]
    assert choice["delta"]["role"] == "assistant"
    assert choice["delta"]["content"] == "hi"
    assert choice["finish_reason"] == "stop"
    assert chunks[0]["model"] == "plain"


def test_stream_of_tool_calls_carries_indexed_tool_call_deltas(client, key):
    register(name="tools", model=ToolCallingModel())

    response = post(client, COMPLETIONS, chat("Oslo", model="tools", stream=True), key=key)

    (chunk,) = _chunks(stream_events(response))
    (choice,) = chunk["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["delta"]["tool_calls"] == [
        {
            "index": 0,
            "id": "call_weather_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        }
    ]


@pytest.mark.parametrize(
    ("model", "usage"),
    [
        (TriggerModel, {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
        # The model reported no usage: null, never made-up zeros.
        (StreamingModel, None),
    ],
)
def test_include_usage_adds_a_final_chunk_with_no_choices_and_the_usage(client, key, model, usage):
    register(name="m", model=model())
    body = chat("a b", model="m", stream=True, stream_options={"include_usage": True})

    chunks = _chunks(stream_events(post(client, COMPLETIONS, body, key=key)))

    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == usage
    assert chunks[-1]["id"] == chunks[0]["id"]
    assert all("usage" not in chunk for chunk in chunks[:-1])
    assert _content(chunks) in ("a b", "a b ")


@pytest.mark.parametrize("model", [ContentPartsModel, PartialUsageModel])
def test_usage_the_model_did_not_fully_report_is_left_out_not_made_up(client, key, model):
    register(name="m", model=model())

    completion = post(client, COMPLETIONS, chat("x", model="m"), key=key).json()
    body = chat("x", model="m", stream=True, stream_options={"include_usage": True})
    chunks = _chunks(stream_events(post(client, COMPLETIONS, body, key=key)))

    assert "usage" not in completion
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] is None


def test_include_usage_false_sends_no_usage_chunk(client, key):
    register(name="plain", model=TriggerModel())
    body = chat("x", model="plain", stream=True, stream_options={"include_usage": False})

    chunks = _chunks(stream_events(post(client, COMPLETIONS, body, key=key)))

    assert len(chunks) == 1 and chunks[0]["choices"]


def test_an_error_mid_stream_ends_it_with_an_error_event_and_no_done(client, key):
    register(name="streamer", model=StreamingModel())

    response = post(client, COMPLETIONS, chat("raise now", model="streamer", stream=True), key=key)

    events = stream_events(response)  # reads to the end: the stream is closed, not hung
    assert "[DONE]" not in events
    first, last = events[0], events[-1]
    assert first["choices"][0]["delta"]["content"] == "raise "
    assert set(last) == {"error"}
    assert last["error"]["type"] == "server_error"
    assert last["error"]["code"] == "model_error"
    assert set(last["error"]) == {"message", "type", "param", "code"}
    assert "stream broke" not in json.dumps(events)
    assert len(events) == 2


def test_an_invalid_chunk_mid_stream_ends_it_with_an_invalid_output_error_event(client, key):
    register(name="bad-stream", model=BadChunkStreamingModel())

    events = stream_events(
        post(client, COMPLETIONS, chat("x", model="bad-stream", stream=True), key=key)
    )

    assert "[DONE]" not in events
    assert events[0]["choices"][0]["delta"]["content"] == "ok "
    assert events[-1]["error"]["code"] == "invalid_model_output"
    assert events[-1]["error"]["type"] == "server_error"


def test_a_stream_that_fails_at_once_is_an_ordinary_error_response(client, key):
    register(name="plain", model=TriggerModel())

    raised = post(client, COMPLETIONS, chat("raise", model="plain", stream=True), key=key)
    garbage = post(client, COMPLETIONS, chat("garbage", model="plain", stream=True), key=key)

    assert error_of(raised, 500)["code"] == "model_error"
    assert error_of(garbage, 502)["code"] == "invalid_model_output"
    assert "secret internal detail" not in raised.content.decode()


def test_stream_options_of_the_wrong_type_is_a_400(client, key):
    register(name="plain", model=TriggerModel())
    body = chat(model="plain", stream=True, stream_options={"include_usage": "yes"})

    error = error_of(post(client, COMPLETIONS, body, key=key), 400)

    assert error["param"] == "stream_options.include_usage"
