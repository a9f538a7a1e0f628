"""Calls through Django's test client, and reading server-sent events, for the API tests."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from tests.helpers import auth, chat, streamed_body

# The routes most tests call: the echo model's invocations, and the OpenAI route.
INVOCATIONS = "/api/models/echo/invocations"
COMPLETIONS = "/v1/chat/completions"


def post(
    client: Client, path: str, body: Any = None, *, key: str | None = None, raw: bytes | None = None
):
    """POST `body` as JSON (or `raw` bytes as they are) with the key's Authorization header."""
    data = raw if raw is not None else json.dumps(chat() if body is None else body)
    return client.post(
        path, data=data, content_type="application/json", **(auth(key) if key else {})
    )


def get(client: Client, path: str, *, key: str | None = None):
    return client.get(path, **(auth(key) if key else {}))


def completion_text(response) -> str:
    assert response.status_code == 200, response.content
    return response.json()["choices"][0]["message"]["content"]


def error_of(response, status: int) -> dict[str, Any]:
    """The OpenAI error object of a `status` response (asserting the whole envelope)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def stream_events(response) -> list[Any]:
    """The `data:` payloads of a text/event-stream response: decoded JSON, or "[DONE]"."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/event-stream")
    text = streamed_body(response).decode()
    assert text.endswith("\n\n")
    events = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events
