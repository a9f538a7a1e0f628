"""Tracing: one span per chat invocation after OpenTelemetry's GenAI conventions, child of the
caller's `traceparent`; nothing of OpenTelemetry loaded when it is off; a real OTLP/HTTP
receiver gets the spans of the real server."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from chatmodels import tracing
from chatmodels.serving import runtime
from tests.api.calls import error_of, stream_events
from tests.helpers import auth, chat, make_key, register
from tests.live import ROOT, chat_body, deployment, http
from tests.metered_models import WordCount

COMPLETIONS = "/v1/chat/completions"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def post(client, path: str, body: dict, *, key: str, traceparent: str | None = None):
    headers = {"HTTP_TRACEPARENT": traceparent} if traceparent else {}
    return client.post(path, body, content_type="application/json", **auth(key), **headers)


@pytest.fixture
def spans(settings):
    """Tracing on, into the SDK's in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings.CHATMODELS_TRACING = True
    tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(None)


@pytest.fixture
def counter(db):
    runtime.stop_workers()
    return register(name="counter", model=WordCount())


@pytest.fixture
def key(db) -> str:
    return make_key(name="tracing")[1]


def test_an_invocation_is_one_genai_span_child_of_the_callers_traceparent(
    client, counter, key, spans
):
    body = chat("two words", model="counter", temperature=0.5, max_tokens=20, top_p=0.9)
    response = post(client, COMPLETIONS, body, key=key, traceparent=TRACEPARENT)

    assert response.status_code == 200
    (span,) = spans.get_finished_spans()
    assert span.name == "chat counter"
    assert span.kind == SpanKind.SERVER
    assert span.context.trace_id == int(TRACE_ID, 16)
    assert span.parent.span_id == int(PARENT_ID, 16) and span.parent.is_remote
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "chatmodels",
        "gen_ai.request.model": "counter",
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.max_tokens": 20,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.response.model": "counter/1",
        "gen_ai.usage.input_tokens": 2,
        "gen_ai.usage.output_tokens": 2,
    }
    assert span.status.status_code == StatusCode.UNSET


def test_without_a_traceparent_the_span_starts_a_trace(client, counter, key, spans):
    post(client, "/api/models/counter/invocations", chat("hi"), key=key)

    (span,) = spans.get_finished_spans()
    assert span.parent is None
    assert span.attributes["gen_ai.request.model"] == "counter"
    assert "gen_ai.request.temperature" not in span.attributes  # not given, not invented


def test_a_failed_invocation_has_an_error_status_and_type(client, counter, key, spans):
    error_of(post(client, COMPLETIONS, chat("raise", model="counter"), key=key), 500)
    error_of(post(client, COMPLETIONS, chat("hi", model="nothing-here"), key=key), 404)

    failed, unknown = spans.get_finished_spans()
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "model_error"
    assert failed.attributes["gen_ai.response.model"] == "counter/1"
    assert unknown.name == "chat nothing-here"
    assert unknown.attributes["error.type"] == "model_not_found"
    assert "gen_ai.response.model" not in unknown.attributes


def test_a_streamed_answer_ends_its_span_when_the_stream_ends(client, counter, key, spans):
    response = post(
        client,
        COMPLETIONS,
        chat("three short words", model="counter", stream=True),
        key=key,
        traceparent=TRACEPARENT,
    )
    assert spans.get_finished_spans() == ()  # the answer is still streaming

    events = stream_events(response)

    assert events[-1] == "[DONE]"
    (span,) = spans.get_finished_spans()
    assert span.parent.span_id == int(PARENT_ID, 16)
    assert span.attributes["gen_ai.usage.output_tokens"] == 3
    assert span.status.status_code == StatusCode.UNSET


# Without OTEL_EXPORTER_OTLP_ENDPOINT, requests (plain and streamed) load nothing of OpenTelemetry.
_NO_TRACING_SCRIPT = """
import json, sys
import django
django.setup()
from django.core.management import call_command
from django.test import Client
from chatmodels import services
from tests.helpers import streamed_body
from tests.metered_models import WordCount

call_command("migrate", verbosity=0)
services.register_model("counter", WordCount())
key = services.create_api_key(name="k")[1]
client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_TRACEPARENT=sys.argv[1])
for stream in (False, True):
    body = {"model": "counter", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    response = client.post("/v1/chat/completions", body, content_type="application/json")
    assert response.status_code == 200, response.content
    if stream:
        streamed_body(response)
print(json.dumps(sorted(name for name in sys.modules if name.startswith("opentelemetry"))))
"""


def test_with_tracing_off_nothing_of_opentelemetry_is_imported(tmp_path):
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {name: value for name, value in os.environ.items() if name in keep}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        ENV_FILE="",
        SECRET_KEY="tracing-off-test",
        ALLOWED_HOSTS="testserver",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CHATMODELS_PACKAGE_DIR=str(tmp_path / "packages"),
        CHATMODELS_CACHE_DIR=str(tmp_path / "cache"),
    )
    result = subprocess.run(
        [sys.executable, "-c", _NO_TRACING_SCRIPT, TRACEPARENT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# --- the real server, exporting to a real OTLP/HTTP receiver -----------------------------------


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: keeps each export request's body (protobuf)."""

    exports: queue.Queue

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.exports.put((self.path, self.headers.get("Content-Type"), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_the_server_exports_spans_to_an_otlp_http_receiver(tmp_path):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    exports: queue.Queue = queue.Queue()
    handler = type("Receiver", (_Receiver,), {"exports": exports})
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        with deployment(tmp_path) as installation:
            installation.manage("register_model", "counter", "tests/metered_models.py:WordCount")
            raw_key = installation.create_api_key("otlp")
            server = installation.start_server(
                "traced",
                workers=1,
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.server_port}",
                OTEL_SERVICE_NAME="chatmodels-test",
                OTEL_BSP_SCHEDULE_DELAY="100",  # ms: export soon
                no_proxy="127.0.0.1,localhost",  # the exporter (requests) honours proxies
                NO_PROXY="127.0.0.1,localhost",
            )
            reply = http(
                "POST",
                server + COMPLETIONS,
                body={**chat_body("four words go here"), "model": "counter", "max_tokens": 9},
                key=raw_key,
                headers={"traceparent": TRACEPARENT},
            )
            assert reply.status == 200, reply.body

            path, content_type, body = exports.get(timeout=30)
    finally:
        receiver.shutdown()

    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = request.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "chatmodels-test"
    (span,) = [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert span.name == "chat counter"
    assert span.trace_id.hex() == TRACE_ID
    assert span.parent_span_id.hex() == PARENT_ID
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["gen_ai.operation.name"].string_value == "chat"
    assert attributes["gen_ai.response.model"].string_value == "counter/1"
    assert attributes["gen_ai.request.max_tokens"].int_value == 9
    assert attributes["gen_ai.usage.input_tokens"].int_value == 4
    assert attributes["gen_ai.usage.output_tokens"].int_value == 4
