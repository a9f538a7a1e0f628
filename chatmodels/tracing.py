"""Tracing: one OpenTelemetry span per chat invocation, after the GenAI semantic conventions.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Off,
nothing of OpenTelemetry is imported and a request pays one settings check. On, each worker
process builds its tracer on first use: a `BatchSpanProcessor` sending OTLP over HTTP to that
endpoint (the exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables itself), with
`service.name` from `OTEL_SERVICE_NAME`.

The span (`chat {model}`, kind SERVER) continues the caller's W3C `traceparent`, carries
`gen_ai.operation.name=chat`, `gen_ai.request.model` (as asked: `name`, `name/N`, `name@alias`),
`gen_ai.response.model` (the version that answered, `name/N`), the request parameters that were
given (`gen_ai.request.temperature`, `max_tokens`, `top_p`), `gen_ai.usage.input_tokens` and
`output_tokens` when the model reported them, and on failure `error.type` and an ERROR status.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings

_tracer: Any = None
_propagator: Any = None
_lock = threading.Lock()

# Request body keys → span attributes, when the client gave them.
_REQUEST_ATTRIBUTES = (
    ("temperature", "gen_ai.request.temperature", (int, float)),
    ("max_tokens", "gen_ai.request.max_tokens", int),
    ("max_completion_tokens", "gen_ai.request.max_tokens", int),
    ("top_p", "gen_ai.request.top_p", (int, float)),
)


def enabled() -> bool:
    return settings.CHATMODELS_TRACING


def start_chat_span(*, model: str, meta: Mapping[str, Any], body: Mapping[str, Any]) -> Any:
    """A started span for a chat request to `model`, child of the caller's `traceparent` (from
    the WSGI environ `meta`); None when tracing is off."""
    if not settings.CHATMODELS_TRACING:
        return None
    tracer, propagator = _get_tracer()
    from opentelemetry.trace import SpanKind

    carrier = {}
    if "HTTP_TRACEPARENT" in meta:
        carrier["traceparent"] = meta["HTTP_TRACEPARENT"]
        if "HTTP_TRACESTATE" in meta:
            carrier["tracestate"] = meta["HTTP_TRACESTATE"]
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "chatmodels",
        "gen_ai.request.model": model,
    }
    for key, attribute, types in _REQUEST_ATTRIBUTES:
        value = body.get(key)
        if isinstance(value, types) and not isinstance(value, bool):
            attributes[attribute] = value
    return tracer.start_span(
        f"chat {model}",
        context=propagator.extract(carrier),
        kind=SpanKind.SERVER,
        attributes=attributes,
    )


def end_chat_span(
    span: Any,
    *,
    response_model: str | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    error_type: str | None,
    error_message: str | None,
) -> None:
    """Finish a span of `start_chat_span` with what the request came to."""
    from opentelemetry.trace import Status, StatusCode

    if response_model is not None:
        span.set_attribute("gen_ai.response.model", response_model)
    if prompt_tokens is not None:
        span.set_attribute("gen_ai.usage.input_tokens", prompt_tokens)
    if completion_tokens is not None:
        span.set_attribute("gen_ai.usage.output_tokens", completion_tokens)
    if error_type is not None:
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, error_message))
    span.end()


def use_tracer_provider(provider: Any) -> None:
    """Send spans to `provider` from now on (tests: an SDK provider with an in-memory exporter);
    None: back to this process's own OTLP exporter, built on next use."""
    global _tracer, _propagator
    with _lock:
        if provider is None:
            _tracer = _propagator = None
            return
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _tracer = provider.get_tracer("chatmodels")
        _propagator = TraceContextTextMapPropagator()


def _get_tracer() -> tuple[Any, Any]:
    if _tracer is None:
        with _lock:
            if _tracer is None:
                _configure()
    return _tracer, _propagator


def _configure() -> None:
    """This process's tracer: OTLP over HTTP, batched (called once, under the lock)."""
    global _tracer, _propagator
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.OTEL_SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _tracer = provider.get_tracer("chatmodels")
    _propagator = TraceContextTextMapPropagator()
