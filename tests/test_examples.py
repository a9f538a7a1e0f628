"""The examples: the echo model, and the OpenAI proxies (sync, async) against a local upstream."""

from __future__ import annotations

import inspect
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cloudpickle
import pytest
from django.core.cache import cache

from chatmodels import ChatChunk, ChatParams, ChatResponse
from chatmodels.exceptions import ModelRaised
from chatmodels.models import RegisteredModel
from chatmodels.packaging import build_package, load_target, open_package, validate_model
from chatmodels.serving import eventloop, runtime
from chatmodels.signature import DEFAULT_INPUT_EXAMPLE, chat_signature
from chatmodels.types import ChatRequest
from tests.api.calls import completion_text, error_of, post, stream_events
from tests.helpers import chat, make_key, register, streamed

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
# examples/openai_proxy.py against a local OpenAI-format upstream


class Upstream:
    """A tiny OpenAI-format server on 127.0.0.1: answers /v1/chat/completions, records requests."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.slow_events_sent = 0
        self.client_went_away = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                upstream.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                if self.path != "/v1/chat/completions":
                    self._send(404, "application/json", b'{"error": {"message": "no route"}}')
                elif body["messages"][-1]["content"] == "fail":
                    self._send(429, "application/json", b'{"error": {"message": "slow down"}}')
                elif body["messages"][-1]["content"] == "slow":
                    self._send_slowly()
                elif body.get("stream"):
                    self._send(200, "text/event-stream", upstream.events(body))
                else:
                    self._send(200, "application/json", json.dumps(upstream.reply(body)).encode())

            def _send(self, status: int, content_type: str, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _send_slowly(self) -> None:
                # An event every 20 ms for up to 10 s, no Content-Length (the body ends when
                # the connection does); a failed write means the client closed the connection.
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                chunk = {"object": "chat.completion.chunk", "created": 1700000000}
                delta = {"index": 0, "delta": {"content": "tick "}, "finish_reason": None}
                event = f"data: {json.dumps({**chunk, 'choices': [delta]})}\n\n".encode()
                for _ in range(500):
                    try:
                        self.wfile.write(event)
                        self.wfile.flush()
                    except OSError:  # BrokenPipeError, ConnectionResetError
                        upstream.client_went_away.set()
                        return
                    upstream.slow_events_sent += 1
                    time.sleep(0.02)

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @staticmethod
    def text(body: dict) -> str:
        return f"{body['model']} heard: {body['messages'][-1]['content']}"

    def reply(self, body: dict) -> dict:
        return {
            "id": "chatcmpl-up",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body["model"],
            "system_fingerprint": "fp_test",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.text(body), "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self.USAGE,
        }

    USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}

    def events(self, body: dict) -> bytes:
        base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1700000000}
        pieces = [{"role": "assistant", "content": ""}]
        pieces += [{"content": word + " "} for word in self.text(body).split()]
        lines = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            for delta in pieces
        ]
        lines.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            lines.append({**base, "choices": [], "usage": self.USAGE})
        text = "".join(f"data: {json.dumps(line)}\n\n" for line in lines)
        return (": keep-alive comment\n\n" + text + "data: [DONE]\n\n").encode()

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def upstream():
    with Upstream() as server:
        yield server


@pytest.fixture
def proxy(upstream, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment")
    return package_and_open(
        f"{EXAMPLES / 'openai_proxy.py'}:OpenAIProxyModel",
        tmp_path,
        model_config={"base_url": upstream.base_url, "model": "upstream-model"},
    )


def test_proxy_registers_and_forwards_a_request(proxy, upstream):
    response = validate_model(proxy, DEFAULT_INPUT_EXAMPLE)

    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "upstream-model heard: Hello!"
    assert response.usage.total_tokens == 7
    assert response.id == "chatcmpl-up"
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["auth"] == "Bearer sk-from-environment"
    assert sent["body"] == {
        "model": "upstream-model",
        "messages": [{"role": "user", "content": "Hello!"}],
        "temperature": 1.0,
        "max_tokens": 10,
        "stop": ["\n"],
        "n": 1,
        "stream": False,
    }


def test_proxy_streams_server_sent_events(proxy, upstream):
    messages, params = request("stream me", stream=True).split()

    chunks = list(proxy.model.predict_stream(proxy.context, messages, params))

    assert proxy.streams is True
    assert all(isinstance(chunk, ChatChunk) for chunk in chunks)
    *answer, usage = chunks
    text = "".join(chunk.choices[0].delta.content or "" for chunk in answer)
    assert text == "upstream-model heard: stream me "
    assert answer[-1].choices[0].finish_reason == "stop"
    # The upstream's usage chunk (asked for with include_usage) is passed on as it came.
    assert usage.choices == [] and usage.usage.to_dict() == Upstream.USAGE
    assert upstream.requests[-1]["body"]["stream"] is True
    assert upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}


def test_proxy_does_not_forward_what_openai_does_not_take(proxy, upstream):
    params = ChatParams(top_k=5, custom_inputs={"trace": True}, temperature=0.3)
    messages, _ = request("hi").split()

    proxy.model.predict(proxy.context, messages, params)

    body = upstream.requests[-1]["body"]
    assert "top_k" not in body and "custom_inputs" not in body
    assert body["temperature"] == 0.3


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
    "min_p": 0.05,
    "repetition_penalty": 1.1,
}
# Not forwarded: ours (custom_inputs, top_k), the server's (model, stream_options).
OURS = {"custom_inputs": {"trace": True}, "top_k": 5, "stream_options": {"include_usage": True}}


def expected_upstream_body(model: str, *, stream: bool) -> dict:
    body = {**FULL_REQUEST, "model": model, "n": 1, "stream": stream}
    if stream:  # the proxies ask for the upstream's usage, to pass real counts on
        body["stream_options"] = {"include_usage": True}
    return body


def test_proxy_forwards_every_request_parameter_and_vendor_key(proxy, upstream):
    messages, params = ChatRequest.from_dict({**FULL_REQUEST, **OURS, "model": "x"}).split()

    proxy.model.predict(proxy.context, messages, params)

    assert upstream.requests[-1]["body"] == expected_upstream_body("upstream-model", stream=False)


def test_proxy_reports_an_upstream_error(proxy):
    messages, params = request("fail").split()

    with pytest.raises(RuntimeError, match=r"upstream answered HTTP 429: .*slow down"):
        proxy.model.predict(proxy.context, messages, params)


def test_proxy_upstream_error_fails_registration(proxy):
    example = {"messages": [{"role": "user", "content": "fail"}]}

    with pytest.raises(
        ModelRaised, match="predict raised RuntimeError: upstream answered HTTP 429"
    ):
        validate_model(proxy, example)


def test_proxy_reads_base_url_from_the_environment(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.base_url + "/")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    loaded = package_and_open(
        f"{EXAMPLES / 'openai_proxy.py'}:OpenAIProxyModel",
        tmp_path,
        model_config={"model": "env-model", "api_key": "sk-from-config"},
    )

    response = validate_model(loaded, DEFAULT_INPUT_EXAMPLE)

    assert response.choices[0].message.content == "env-model heard: Hello!"
    assert upstream.requests[-1]["auth"] == "Bearer sk-from-config"


# ---------------------------------------------------------------------------------------------
# examples/openai_proxy_async.py: registered and served for real (database, HTTP API, upstream)

ASYNC_PROXY = f"{EXAMPLES / 'openai_proxy_async.py'}:AsyncOpenAIProxyModel"
COMPLETIONS = "/v1/chat/completions"


@pytest.fixture
def served_async_proxy(db, upstream, monkeypatch, settings):
    """async-proxy/1 registered through the service, with no loaded model carried over."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment")
    settings.CHATMODELS_WORKER_ENV = ["OPENAI_API_KEY"]  # the one variable its worker may see
    runtime.stop_workers()
    cache.clear()
    version = register(
        name="async-proxy",
        model=ASYNC_PROXY,
        model_config={"base_url": upstream.base_url, "model": "upstream-model"},
    )
    yield version
    runtime.stop_workers()
    cache.clear()


@pytest.fixture
def api_key(db) -> str:
    return make_key(name="async-proxy-caller")[1]


def test_async_proxy_is_async_and_picklable_before_load_context():
    model_class = load_target(ASYNC_PROXY)

    assert inspect.iscoroutinefunction(model_class.predict)
    assert inspect.isasyncgenfunction(model_class.predict_stream)
    assert inspect.iscoroutinefunction(model_class.load_context)
    assert vars(cloudpickle.loads(cloudpickle.dumps(model_class()))) == {}


def test_async_proxy_registers_and_forwards_a_request(served_async_proxy, upstream):
    assert served_async_proxy.version == 1
    assert served_async_proxy.model.name == "async-proxy"
    sent = upstream.requests[-1]  # registration ran predict once on the default input example
    assert len(upstream.requests) == 1
    assert sent["path"] == "/v1/chat/completions"
    assert sent["auth"] == "Bearer sk-from-environment"
    assert sent["body"] == {
        "model": "upstream-model",
        "messages": [{"role": "user", "content": "Hello!"}],
        "temperature": 1.0,
        "max_tokens": 10,
        "stop": ["\n"],
        "n": 1,
        "stream": False,
    }


def test_async_proxy_answers_through_the_http_api(client, served_async_proxy, upstream, api_key):
    body = chat("hi there", model="async-proxy", top_k=5, custom_inputs={"trace": True})

    response = post(client, COMPLETIONS, body, key=api_key)

    assert completion_text(response) == "upstream-model heard: hi there"
    completion = response.json()
    assert completion["id"] == "chatcmpl-up"
    assert completion["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    sent = upstream.requests[-1]["body"]
    assert sent["messages"] == [{"role": "user", "content": "hi there"}]
    assert sent["stream"] is False
    assert "top_k" not in sent and "custom_inputs" not in sent


@pytest.mark.parametrize("stream", [False, True])
def test_async_proxy_forwards_every_request_parameter_over_http(
    client, served_async_proxy, upstream, api_key, stream
):
    # stream_options only with stream, as OpenAI's API requires.
    ours = OURS if stream else {k: v for k, v in OURS.items() if k != "stream_options"}
    body = {**FULL_REQUEST, **ours, "model": "async-proxy", "stream": stream}

    response = post(client, COMPLETIONS, body, key=api_key)

    assert response.status_code == 200, response.content
    if stream:
        assert stream_events(response)[-1] == "[DONE]"
    assert upstream.requests[-1]["body"] == expected_upstream_body("upstream-model", stream=stream)


def test_async_proxy_streams_the_upstream_chunks_then_done(
    client, served_async_proxy, upstream, api_key
):
    body = chat("stream me", model="async-proxy", stream=True)

    events = stream_events(post(client, COMPLETIONS, body, key=api_key))

    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert [chunk["choices"][0]["delta"].get("content") for chunk in chunks] == [
        "",
        "upstream-model ",
        "heard: ",
        "stream ",
        "me ",
        None,
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None] * 5 + ["stop"]
    assert {chunk["model"] for chunk in chunks} == {"async-proxy"}
    assert all("usage" not in chunk for chunk in chunks)
    assert upstream.requests[-1]["body"]["stream"] is True


def test_async_proxy_stream_reports_the_upstream_usage_when_asked(
    client, served_async_proxy, upstream, api_key
):
    body = chat("stream me", model="async-proxy", stream=True)
    body["stream_options"] = {"include_usage": True}

    events = stream_events(post(client, COMPLETIONS, body, key=api_key))

    assert events[-1] == "[DONE]"
    final = events[-2]
    assert final["choices"] == [] and final["usage"] == Upstream.USAGE
    assert upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}


def test_async_proxy_stream_closed_early_closes_the_upstream_response(
    client, served_async_proxy, upstream, api_key
):
    body = chat("slow", model="async-proxy", stream=True)
    response = post(client, COMPLETIONS, body, key=api_key)
    assert response.status_code == 200
    events = streamed(response)
    first = next(events)
    assert json.loads(first.removeprefix(b"data: "))["choices"][0]["delta"]["content"] == "tick "

    events.close()  # the client goes away

    assert upstream.client_went_away.wait(timeout=5), "the upstream response was left open"
    assert upstream.slow_events_sent < 250  # stopped early, not drained for 10 s


def test_async_proxy_stream_aclosed_between_chunks_closes_the_upstream_response(upstream, tmp_path):
    loaded = package_and_open(ASYNC_PROXY, tmp_path, model_config={"base_url": upstream.base_url})
    messages, params = request("slow", stream=True).split()
    stream = loaded.model.predict_stream(loaded.context, messages, params)
    first = eventloop.run(anext(stream), timeout=5)
    assert first.choices[0].delta.content == "tick "

    eventloop.run(stream.aclose(), timeout=5)  # closed at its `yield`, not cancelled mid-read

    assert upstream.client_went_away.wait(timeout=5), "the upstream response was left open"


def test_async_proxy_upstream_error_fails_registration(db, upstream, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    with pytest.raises(
        ModelRaised, match=r"predict raised RuntimeError: upstream answered HTTP 429: .*slow down"
    ):
        register(
            name="async-proxy",
            model=ASYNC_PROXY,
            model_config={"base_url": upstream.base_url, "model": "upstream-model"},
            input_example={"messages": [{"role": "user", "content": "fail"}]},
        )

    assert upstream.requests[-1]["auth"] is None
    assert not RegisteredModel.objects.filter(name="async-proxy").exists()


def test_async_proxy_upstream_error_at_serving_is_a_500_without_the_detail(
    client, served_async_proxy, api_key
):
    response = post(client, COMPLETIONS, chat("fail", model="async-proxy"), key=api_key)

    error = error_of(response, 500)
    assert "slow down" not in error["message"]
