"""The examples: the echo demo model and the OpenAI proxy against a tiny local upstream."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chatmodels import ChatChunk, ChatParams, ChatResponse
from chatmodels.exceptions import ModelRaised
from chatmodels.packaging import build_package, load_target, open_package, validate_model
from chatmodels.signature import DEFAULT_INPUT_EXAMPLE, chat_signature
from chatmodels.types import ChatRequest

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
            "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
        }

    def events(self, body: dict) -> bytes:
        base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1700000000}
        pieces = [{"role": "assistant", "content": ""}]
        pieces += [{"content": word + " "} for word in self.text(body).split()]
        lines = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            for delta in pieces
        ]
        lines.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
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
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == "upstream-model heard: stream me "
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert upstream.requests[-1]["body"]["stream"] is True


def test_proxy_does_not_forward_what_openai_does_not_take(proxy, upstream):
    params = ChatParams(top_k=5, custom_inputs={"trace": True}, temperature=0.3)
    messages, _ = request("hi").split()

    proxy.model.predict(proxy.context, messages, params)

    body = upstream.requests[-1]["body"]
    assert "top_k" not in body and "custom_inputs" not in body
    assert body["temperature"] == 0.3


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
