"""The chat routes' direct path (`api/direct.py`) answers as Django's whole request cycle does.

Each request is sent both ways, into the same database: through Django's test client (handler,
middleware, URL resolution, DRF) and through `direct.answer`, as the server's ASGI application
calls it. Status, headers and body must agree, but for what differs per call (ids, timestamps, the
request id).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from chatmodels.api import direct
from tests.helpers import chat, make_key, register, streamed_body
from tests.sample_models import PrefixModel, TriggerModel

pytestmark = pytest.mark.django_db(transaction=True)  # the direct path asks in threads of its own

COMPLETIONS = "/v1/chat/completions"
RESPONSES = "/v1/responses"
INVOCATIONS = "/api/models/echo/invocations"

_VARYING = re.compile(
    r'("(?:id|created|created_at|response_id|item_id)": )("[^"]*"|\d+)'
    r"|\b(?:chatcmpl|resp|msg|rs)[-_][A-Za-z0-9]+"
)


@pytest.fixture
def models(db):
    register(name="echo", model=PrefixModel("v1:"), aliases=["prod"])
    register(name="echo", model=PrefixModel("v2:"))
    register(name="broken", model=TriggerModel())
    return {"all": make_key(name="all")[1], "scoped": make_key(name="s", models=["broken"])[1]}


def _through_django(client, path: str, query: str, raw: bytes, headers: dict[str, str]):
    extra = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
    url = f"{path}?{query}" if query else path
    response = client.post(url, data=raw, content_type="application/json", **extra)
    body = streamed_body(response) if response.streaming else response.content
    return response.status_code, dict(response.items()), body


def _through_direct(path: str, query: str, raw: bytes, headers: dict[str, str]):
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    route = direct.route(scope)
    assert route is not None, path
    messages: list[dict[str, Any]] = []

    async def exchange() -> bool:
        ended = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await ended.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                ended.set()

        return await direct.answer(route, scope, raw, receive, send)

    assert async_to_sync(exchange)()
    start, *parts = messages
    headers_sent = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], headers_sent, b"".join(part.get("body", b"") for part in parts)


def _comparable(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], str]:
    assert re.fullmatch(r"[0-9a-f]{32}", headers.pop("X-Request-ID"))
    if "Content-Length" in headers:  # the ids vary in length
        headers["Content-Length"] = "N"
    return headers, _VARYING.sub(lambda m: (m.group(1) or "") + "X", body.decode())


CASES = {
    "completion": (COMPLETIONS, "", chat(model="echo"), "all"),
    "completion of an alias": (COMPLETIONS, "", chat(model="echo@prod"), "all"),
    "stream": (COMPLETIONS, "", chat(model="echo/1", stream=True), "all"),
    "stream with usage": (
        COMPLETIONS,
        "",
        chat(model="echo", stream=True, stream_options={"include_usage": True}),
        "all",
    ),
    "invocation": (INVOCATIONS, "", chat(), "all"),
    "invocation of a version": (INVOCATIONS, "version=1", chat(), "all"),
    "invocation naming both": (INVOCATIONS, "version=1&alias=prod", chat(), "all"),
    "invocation naming another model": (INVOCATIONS, "", chat(model="other"), "all"),
    "response": (RESPONSES, "", {"model": "echo", "input": "hi", "store": False}, "all"),
    "response stream": (
        RESPONSES,
        "",
        {"model": "echo", "input": "hi", "store": False, "stream": True},
        "all",
    ),
    "no key": (COMPLETIONS, "", chat(model="echo"), None),
    "malformed authorization": (COMPLETIONS, "", chat(model="echo"), "Basic abc"),
    "unknown key": (COMPLETIONS, "", chat(model="echo"), "Bearer sk-nope"),
    "model the key may not call": (COMPLETIONS, "", chat(model="echo"), "scoped"),
    "unknown model": (COMPLETIONS, "", chat(model="nope"), "all"),
    "no model": (COMPLETIONS, "", chat(), "all"),
    "unknown version": (COMPLETIONS, "", chat(model="echo/9"), "all"),
    "bad role": (COMPLETIONS, "", {"model": "echo", "messages": [{"role": "robot"}]}, "all"),
    "not json": (COMPLETIONS, "", b"{nope", "all"),
    "not an object": (COMPLETIONS, "", [1, 2], "all"),
    "NaN": (COMPLETIONS, "", b'{"model": "echo", "temperature": NaN}', "all"),
    "model raises": (COMPLETIONS, "", chat("raise", model="broken"), "all"),
    "model answers garbage": (COMPLETIONS, "", chat("garbage", model="broken"), "all"),
    "model raises mid-stream": (
        COMPLETIONS,
        "",
        chat("raise", model="broken", stream=True),
        "all",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_chat_route_answers_directly_as_through_django(client, models, case):
    path, query, body, key = CASES[case]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {}
    if key in models:
        headers["Authorization"] = f"Bearer {models[key]}"
    elif key is not None:
        headers["Authorization"] = key

    status, django_headers, django_body = _through_django(client, path, query, raw, headers)
    direct_status, direct_headers, direct_body = _through_direct(path, query, raw, headers)

    assert direct_status == status
    assert _comparable(direct_headers, direct_body) == _comparable(django_headers, django_body)


def test_a_stored_response_is_stored_by_either_way(client, models):
    body = json.dumps({"model": "echo", "input": "remember me"}).encode()
    headers = {"Authorization": f"Bearer {models['all']}"}
    _, _, answered = _through_direct(RESPONSES, "", body, headers)
    stored_id = json.loads(answered)["id"]

    again = client.get(f"/v1/responses/{stored_id}", HTTP_AUTHORIZATION=headers["Authorization"])

    assert again.status_code == 200
    assert again.json()["output"][0]["content"][0]["text"] == "v2:remember me"


@pytest.mark.parametrize(
    "scope_change",
    [
        pytest.param({"method": "GET"}, id="another method"),
        pytest.param({"path": "/v1/chat/completions/"}, id="another path"),
        pytest.param({"path": "/api/models/a/b/invocations"}, id="a name with a slash"),
        pytest.param({"root_path": "/gateway"}, id="a script prefix"),
    ],
)
def test_what_is_not_a_chat_route_goes_through_django(scope_change):
    scope = {"method": "POST", "path": COMPLETIONS, "root_path": "", **scope_change}

    assert direct.route(scope) is None


def test_a_global_request_rate_or_other_middleware_sends_chat_routes_through_django(settings):
    scope = {"method": "POST", "path": COMPLETIONS, "root_path": ""}
    assert direct.route(scope) is not None

    settings.CHATMODELS_THROTTLE_RATE = "600/min"
    assert direct.route(scope) is None

    settings.CHATMODELS_THROTTLE_RATE = None
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]
    assert direct.route(scope) is None


def test_a_disallowed_host_is_left_to_django(models):
    scope = {
        "type": "http",
        "method": "POST",
        "path": COMPLETIONS,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"evil.example")],
    }

    answered = async_to_sync(direct.answer)(
        direct.route(scope), scope, b"{}", _never_called, _never_called
    )

    assert answered is False


async def _never_called(*args: Any) -> Any:
    raise AssertionError("nothing is received or sent for a request Django answers")
