"""An OpenAI-compatible upstream stand-in on 127.0.0.1 for the tests of models that forward.

It answers `POST /v1/chat/completions` over HTTP/1.1 keep-alive, records every request, counts
the connections it holds open, and behaves by the last message's content:

    "fail"     429 with Retry-After: 7            "bad"      400 naming `max_tokens`
    "broken"   503 (counted in `broken_answers`)   "slow"     streams "tick " every 20 ms for 10 s
    "weather?" a tool call of get_weather          anything   "<model> heard: <content>"

`refuse_with` set to a status makes every request answer it (an upstream that is failing).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


class Upstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.slow_events_sent = 0
        self.broken_answers = 0
        self.refuse_with: int | None = None
        self.client_went_away = threading.Event()
        self.open_connections = 0
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real upstreams: clients pool

            def setup(self) -> None:
                super().setup()
                with upstream._lock:
                    upstream.open_connections += 1

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with upstream._lock:
                        upstream.open_connections -= 1

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                upstream.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": body,
                        "peer": self.client_address,  # one per connection: shows reuse
                    }
                )
                last = body["messages"][-1].get("content")
                if upstream.refuse_with is not None:
                    error = {"error": {"message": "upstream failing", "type": "server_error"}}
                    self._send_json(upstream.refuse_with, error)
                elif self.path != "/v1/chat/completions":
                    self._send_json(404, {"error": {"message": "no route"}})
                elif last == "fail":
                    error = {"error": {"message": "slow down", "type": "rate_limit_exceeded"}}
                    self._send_json(429, error, {"Retry-After": "7"})
                elif last == "bad":
                    error = {
                        "error": {
                            "message": "max_tokens is too large for this model",
                            "type": "invalid_request_error",
                            "param": "max_tokens",
                            "code": "invalid_value",
                        }
                    }
                    self._send_json(400, error)
                elif last == "broken":
                    upstream.broken_answers += 1
                    self._send_json(503, {"error": {"message": "overloaded"}})
                elif last == "slow":
                    self._send_slowly()
                elif body.get("stream"):
                    self._send(200, "text/event-stream", upstream.events(body))
                else:
                    self._send_json(200, upstream.reply(body))

            def _send_json(self, status: int, value: Any, headers: dict | None = None) -> None:
                self._send(status, "application/json", json.dumps(value).encode(), headers)

            def _send(
                self, status: int, content_type: str, payload: bytes, headers: dict | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _send_slowly(self) -> None:
                # An event every 20 ms for up to 10 s, no Content-Length (the body ends when
                # the connection does); a failed write means the client closed the connection.
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
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
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @staticmethod
    def text(body: dict) -> str:
        return f"{body['model']} heard: {body['messages'][-1]['content']}"

    @staticmethod
    def wants_tool(body: dict) -> bool:
        return body["messages"][-1].get("content") == "weather?" and bool(body.get("tools"))

    def reply(self, body: dict) -> dict:
        if self.wants_tool(body):
            message = {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}
            finish_reason = "tool_calls"
        else:
            message = {"role": "assistant", "content": self.text(body), "refusal": None}
            finish_reason = "stop"
        return {
            "id": "chatcmpl-up",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body["model"],
            "system_fingerprint": "fp_test",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": USAGE,
        }

    def events(self, body: dict) -> bytes:
        base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1700000000}
        if self.wants_tool(body):
            pieces = [{"role": "assistant", "tool_calls": [{"index": 0, **TOOL_CALL}]}]
            finish_reason = "tool_calls"
        else:
            pieces = [{"role": "assistant", "content": ""}]
            pieces += [{"content": word + " "} for word in self.text(body).split()]
            finish_reason = "stop"
        lines = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            for delta in pieces
        ]
        lines.append(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]}
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            lines.append({**base, "choices": [], "usage": USAGE})
        text = "".join(f"data: {json.dumps(line)}\n\n" for line in lines)
        return (": keep-alive comment\n\n" + text + "data: [DONE]\n\n").encode()

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
