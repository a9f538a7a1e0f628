"""`chatmodels.contrib:OpenAICompatibleModel` in front of an upstream stand-in (tests/upstream.py):
every parameter forwarded, streams passed on, upstream errors mapped, retries and fallbacks;
then through the real server with the `openai` SDK."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from urllib.parse import urlsplit

import openai
import psutil
import pytest
from django.core.cache import cache

from chatmodels.exceptions import ModelRaised
from chatmodels.models import RegisteredModel
from chatmodels.serving import runtime
from tests.api.calls import completion_text, error_of, post, stream_events
from tests.helpers import chat, make_key, register, streamed
from tests.live import deployment, free_port, http
from tests.upstream import TOOL_CALL, USAGE, Upstream

TARGET = "chatmodels.contrib:OpenAICompatibleModel"
COMPLETIONS = "/v1/chat/completions"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def upstream():
    with Upstream() as server:
        yield server


@pytest.fixture
def fresh_workers(db):
    runtime.stop_workers()
    cache.clear()
    yield
    runtime.stop_workers()
    cache.clear()


def forwarder(upstream: Upstream, name: str = "up", **config):
    """`name`/1: OpenAICompatibleModel registered through the service, in front of `upstream`."""
    return register(
        name=name,
        model=TARGET,
        model_config={"base_url": upstream.base_url, "model": "up-model", **config},
    )


@pytest.fixture
def key(db) -> str:
    return make_key(name="caller")[1]


# What a client may send beyond MLflow's parameters: every key must reach the upstream as sent.
FULL_REQUEST = {
    "messages": [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Read this"},
                {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "a.pdf"}},
            ],
        },
        {"role": "assistant", "refusal": "I can't open files."},
        {"role": "user", "content": "Then the weather?"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "when": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    },
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        },
        {"type": "web_search_preview", "search_context_size": "low"},
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": {"type": "object", "default": None}},
    },
    "seed": 7,
    "user": "user-1",
    "metadata": {"team": "search"},
    "logprobs": True,
    "top_logprobs": 2,
    "logit_bias": {"1234": -100},
    "reasoning_effort": "low",
    "max_completion_tokens": 50,
    "temperature": 0.2,
    "top_k": 5,
    "min_p": 0.05,
    "repetition_penalty": 1.1,
}


# ---------------------------------------------------------------------------------------------
# Through the test client (real model workers)


@pytest.mark.parametrize("stream", [False, True])
def test_every_request_parameter_and_vendor_key_reaches_the_upstream(
    client, fresh_workers, upstream, key, stream
):
    forwarder(upstream)
    body = {**FULL_REQUEST, "custom_inputs": {"trace": True}, "model": "up", "stream": stream}

    response = post(client, COMPLETIONS, body, key=key)

    assert response.status_code == 200, response.content
    if stream:
        assert stream_events(response)[-1] == "[DONE]"
    sent = upstream.requests[-1]["body"]
    expected = {k: v for k, v in FULL_REQUEST.items()}
    expected.update(model="up-model", n=1, stream=stream)
    if stream:  # asked for, so that the server reports the upstream's real token counts
        expected["stream_options"] = {"include_usage": True}
    assert sent == expected  # custom_inputs is ours: not sent


def test_answer_and_usage_come_from_the_upstream(client, fresh_workers, upstream, key):
    forwarder(upstream)

    response = post(client, COMPLETIONS, chat("hi there", model="up"), key=key)

    assert completion_text(response) == "up-model heard: hi there"
    assert response.json()["usage"] == USAGE
    assert response.json()["model"] == "up-model"  # what answered, as the upstream names it


def test_streams_the_upstream_chunks_with_its_usage(client, fresh_workers, upstream, key):
    forwarder(upstream)
    body = chat("stream me", model="up", stream=True, stream_options={"include_usage": True})

    events = stream_events(post(client, COMPLETIONS, body, key=key))

    assert events[-1] == "[DONE]"
    *chunks, usage = events[:-1]
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert text == "up-model heard: stream me "
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"] == USAGE


def test_tool_calls_pass_through(client, fresh_workers, upstream, key):
    forwarder(upstream)
    body = chat("weather?", model="up", tools=[WEATHER_TOOL])

    answer = post(client, COMPLETIONS, body, key=key).json()
    events = stream_events(post(client, COMPLETIONS, {**body, "stream": True}, key=key))

    assert answer["choices"][0]["message"]["tool_calls"] == [TOOL_CALL]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    [call] = events[0]["choices"][0]["delta"]["tool_calls"]
    assert call["function"] == TOOL_CALL["function"]


def test_key_comes_from_the_variable_api_key_env_names(
    client, fresh_workers, upstream, key, settings, monkeypatch
):
    monkeypatch.setenv("UPSTREAM_TEST_KEY", "sk-upstream")
    settings.CHATMODELS_WORKER_ENV = ["UPSTREAM_TEST_KEY"]  # the one variable its worker sees
    forwarder(upstream, api_key_env="UPSTREAM_TEST_KEY")

    post(client, COMPLETIONS, chat("hi", model="up"), key=key)

    assert upstream.requests[-1]["auth"] == "Bearer sk-upstream"


def test_upstream_400_is_answered_as_the_upstream_said(client, fresh_workers, upstream, key):
    forwarder(upstream)

    error = error_of(post(client, COMPLETIONS, chat("bad", model="up"), key=key), 400)

    assert error == {
        "message": "max_tokens is too large for this model",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "invalid_value",
    }


def test_upstream_429_keeps_its_retry_after(client, fresh_workers, upstream, key):
    forwarder(upstream)

    response = post(client, COMPLETIONS, chat("fail", model="up"), key=key)

    assert error_of(response, 429)["message"] == "slow down"
    assert response["Retry-After"] == "7"


def test_upstream_5xx_is_retried_then_answered_502(client, fresh_workers, upstream, key):
    forwarder(upstream, max_retries=1)
    upstream.broken_answers = 0

    error = error_of(post(client, COMPLETIONS, chat("broken", model="up"), key=key), 502)

    assert upstream.broken_answers == 2  # the first try and one retry
    assert error["code"] == "upstream_error"
    assert error["message"] == "the upstream failed (HTTP 503): overloaded"


def test_fallback_answers_when_the_upstream_is_down(client, fresh_workers, key):
    with Upstream() as fallback:
        dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
        register(
            name="up",
            model=TARGET,
            model_config={
                "base_url": dead,
                "model": "m",
                "fallback_base_urls": [fallback.base_url],
            },
        )

        response = post(client, COMPLETIONS, chat("hi", model="up"), key=key)

        assert completion_text(response) == "m heard: hi"


def test_a_saturated_upstream_hands_over_to_the_fallback(client, fresh_workers, upstream, key):
    with Upstream() as fallback:
        forwarder(upstream, fallback_base_urls=[fallback.base_url])
        upstream.refuse_with = 429

        response = post(client, COMPLETIONS, chat("hi", model="up"), key=key)

        assert completion_text(response) == "up-model heard: hi"
        assert fallback.requests[-1]["body"]["messages"][-1]["content"] == "hi"


def test_nothing_answering_is_a_502_naming_no_address(client, fresh_workers, upstream, key):
    with Upstream() as fallback:
        forwarder(upstream, fallback_base_urls=[fallback.base_url], max_retries=0)
        upstream.refuse_with = fallback.refuse_with = 503

        error = error_of(post(client, COMPLETIONS, chat("hi", model="up"), key=key), 502)

        assert error["message"] == "the upstream failed (HTTP 503): upstream failing"
        assert "127.0.0.1" not in json.dumps(error)


def test_stream_closed_early_closes_the_upstream_connection(client, fresh_workers, upstream, key):
    forwarder(upstream)
    response = post(client, COMPLETIONS, chat("slow", model="up", stream=True), key=key)
    events = streamed(response)
    first = next(events).split(b"\n\n")[0]  # one write may carry several events
    assert json.loads(first.removeprefix(b"data: "))["choices"][0]["delta"]["content"] == "tick "

    events.close()  # the client goes away

    assert upstream.client_went_away.wait(timeout=15), "the upstream response was left open"
    assert upstream.slow_events_sent < 250  # stopped early, not drained for 10 s


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"base_url": "http://x/v1"}, "model_config model: required, a non-empty string"),
        ({"model": "m", "base_url": "ftp://x"}, "base_url: expected an http:// or https:// URL"),
        ({"model": "m", "base_url": "http://x", "retries": 2}, "unknown key 'retries'"),
        ({"model": "m", "base_url": "http://x", "max_retries": -1}, "max_retries: expected"),
        ({"model": "m", "base_url": "http://x", "api_key_env": "NOT_SET_ANYWHERE"}, "is not set"),
    ],
)
def test_a_wrong_config_refuses_registration_naming_the_key(fresh_workers, config, problem):
    with pytest.raises(ModelRaised, match="load_context raised ValueError") as raised:
        register(name="up", model=TARGET, model_config=config)

    assert problem in str(raised.value)
    assert not RegisteredModel.objects.filter(name="up").exists()


# ---------------------------------------------------------------------------------------------
# Through the real server, with the openai SDK


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    directory = tmp_path_factory.mktemp("openai-compatible")
    with Upstream() as upstream, deployment(directory) as installation:
        config = directory / "up.json"
        config.write_text(json.dumps({"base_url": upstream.base_url, "model": "up-model"}))
        installation.manage("register_model", "up", TARGET, "--model-config", str(config))
        dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
        down = directory / "down.json"
        down.write_text(
            json.dumps({"base_url": dead, "model": "m", "fallback_base_urls": [upstream.base_url]})
        )
        installation.manage("register_model", "down", TARGET, "--model-config", str(down))
        installation.key = installation.create_api_key("sdk")
        installation.server = installation.start_server("server", workers=1, max_in_flight=64)
        installation.upstream = upstream
        yield installation


def sdk(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.server + "/v1", api_key=live.key, max_retries=0)


@pytest.mark.slow
def test_the_openai_sdk_chats_streams_and_calls_tools_through_it(live):
    client = sdk(live)

    answer = client.chat.completions.create(
        model="up", messages=[{"role": "user", "content": "hi"}]
    )
    stream = client.chat.completions.create(
        model="up",
        messages=[{"role": "user", "content": "hi there"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    tool = client.chat.completions.create(
        model="up", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL]
    )

    assert answer.choices[0].message.content == "up-model heard: hi"
    assert answer.usage.total_tokens == 7
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "up-model heard: hi there "
    assert chunks[-1].usage.total_tokens == 7
    [call] = tool.choices[0].message.tool_calls
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')


@pytest.mark.slow
def test_the_openai_sdk_responses_api_through_it(live):
    client = sdk(live)

    response = client.responses.create(model="up", input="hello", store=False)
    with client.responses.stream(model="up", input="hello you", store=False) as events:
        streamed_text = "".join(
            event.delta for event in events if event.type == "response.output_text.delta"
        )
        final = events.get_final_response()

    assert response.output_text == "up-model heard: hello"
    assert streamed_text == "up-model heard: hello you "
    assert final.usage.total_tokens == 7


@pytest.mark.slow
def test_an_upstream_429_reaches_the_sdk_with_its_retry_after(live):
    with pytest.raises(openai.RateLimitError) as raised:
        sdk(live).chat.completions.create(
            model="up", messages=[{"role": "user", "content": "fail"}]
        )

    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.message.endswith("slow down")


@pytest.mark.slow
def test_the_fallback_answers_when_the_upstream_is_down(live):
    hi = [{"role": "user", "content": "hi"}]

    answer = sdk(live).chat.completions.create(model="down", messages=hi)

    assert answer.choices[0].message.content == "m heard: hi"


@pytest.mark.slow
def test_a_client_that_goes_away_closes_the_upstream_connection(live):
    upstream = live.upstream
    upstream.client_went_away.clear()
    parts = urlsplit(live.server)
    connection = HTTPConnection(parts.hostname, parts.port, timeout=10)
    body = {"model": "up", "stream": True, "messages": [{"role": "user", "content": "slow"}]}
    connection.request(
        "POST",
        COMPLETIONS,
        body=json.dumps(body),
        headers={"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"},
    )
    reply = connection.getresponse()
    assert reply.status == 200
    assert b"tick" in reply.readline()

    connection.close()  # the client goes away mid-stream

    assert upstream.client_went_away.wait(timeout=10), "the upstream connection was left open"


@pytest.mark.slow
def test_no_connection_leaks_after_a_thousand_requests(live):
    upstream = live.upstream
    upstream_port = urlsplit(upstream.base_url).port

    def ask(n: int) -> int:
        body = {"model": "up", "messages": [{"role": "user", "content": f"n{n}"}]}
        return http("POST", live.server + COMPLETIONS, body=body, key=live.key).status

    before = upstream.open_connections  # other models' pooled connections among them
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(ask, range(1000)))

    assert statuses == [200] * 1000
    # Pooled keep-alive connections: at most one more per request in flight at once.
    assert upstream.open_connections <= before + 16
    workers = [
        process
        for server in live.processes
        for process in psutil.Process(server.popen.pid).children(recursive=True)
        if "chatmodels.serving.workers.worker" in " ".join(process.cmdline())
    ]
    assert workers
    to_upstream = [
        c
        for w in workers
        for c in w.net_connections("tcp")
        if c.raddr and c.raddr.port == upstream_port
    ]
    assert len(to_upstream) <= before + 16


# ---------------------------------------------------------------------------------------------
# The sync twin of the worker's client


def test_a_sync_model_reuses_connections_of_context_http_sync(client, fresh_workers, upstream, key):
    register(
        name="sync-up",
        model="tests/worker_models.py:SyncUpstreamModel",
        model_config={"base_url": upstream.base_url},
    )

    answers = [post(client, COMPLETIONS, chat(f"n{n}", model="sync-up"), key=key) for n in range(5)]
    events = stream_events(
        post(client, COMPLETIONS, chat("a b", model="sync-up", stream=True), key=key)
    )

    assert [completion_text(a) for a in answers] == [f"sync heard: n{n}" for n in range(5)]
    text = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"]
    )
    assert text == "sync heard: a b "
    peers = {request["peer"] for request in upstream.requests[-6:]}
    assert len(peers) == 1  # one pooled keep-alive connection served them all
