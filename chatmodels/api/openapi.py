"""The OpenAPI description of the HTTP API, declared apart from the views that serve it.

The chat request and response schemas come from the signature (the executable form is
`ChatRequest.from_dict`, with errors that name the field); the schemas here only describe them.
Each view takes its operation's declaration from here (`@openapi.invocations` …).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)

from chatmodels import signature
from chatmodels.api.serializers import UsageQuerySerializer, UsageRowSerializer
from chatmodels.selectors import MAX_VERSION, MODEL_REFERENCE_PATTERN


def _openapi(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "$schema"}


_STREAM_OPTIONS = {
    "type": ["object", "null"],
    "description": "With stream: `include_usage` adds a last chunk carrying `usage`.",
    "properties": {"include_usage": {"type": "boolean"}},
}
# What `selectors.parse_model_reference` accepts: `name`, `name/VERSION` or `name@ALIAS`.
MODEL_REFERENCE_SCHEMA = {
    "type": "string",
    "pattern": MODEL_REFERENCE_PATTERN,
    "description": "`name` (the latest version), `name/VERSION` or `name@ALIAS`.",
    "example": "echo",
}
VERSION_NUMBER_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_VERSION, "example": 1}

# The invocations route: the chat request of the signature (a `model` key may only name the
# URL's model there). stream_options only with stream true, top_logprobs only with logprobs
# true, as OpenAI's API requires.
CHAT_REQUEST_SCHEMA = _openapi(
    {
        **signature.REQUEST_SCHEMA,
        "properties": {**signature.REQUEST_SCHEMA["properties"], "stream_options": _STREAM_OPTIONS},
        "dependentSchemas": {
            "stream_options": {
                "anyOf": [
                    {"properties": {"stream_options": {"type": "null"}}},
                    {"required": ["stream"], "properties": {"stream": {"const": True}}},
                ]
            },
            "top_logprobs": {
                "anyOf": [
                    {"properties": {"top_logprobs": {"type": "null"}}},
                    {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}},
                ]
            },
        },
    }
)
# /v1/chat/completions: the same, and `model` says which model answers.
CHAT_COMPLETIONS_REQUEST_SCHEMA = {
    **CHAT_REQUEST_SCHEMA,
    "properties": {"model": MODEL_REFERENCE_SCHEMA, **CHAT_REQUEST_SCHEMA["properties"]},
    "required": ["model", *CHAT_REQUEST_SCHEMA["required"]],
}
CHAT_RESPONSE_SCHEMA = _openapi(signature.RESPONSE_SCHEMA)
# One server-sent event (OpenAPI 3.2's model of text/event-stream: `schema` is one event).
CHAT_STREAM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Server-sent events: `data: {chat.completion.chunk}`, then `data: [DONE]`; "
    "a stream that fails after it started ends with `data: {error object}` instead.",
    "properties": {
        "data": {
            "type": "string",
            "description": "A JSON chat.completion.chunk, a JSON error object, or `[DONE]`.",
        },
        "event": {"type": "string", "enum": ["message"]},
    },
    "required": ["data"],
}
# One event of a /v1/responses stream: `event: <type>` and its JSON `data`.
RESPONSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Server-sent events, typed (`response.created` … `response.output_text.delta` "
    "… `response.completed`), each with its `sequence_number`; a failure ends the stream with "
    "`error` and `response.failed`.",
    "properties": {
        "event": {"type": "string", "description": "The event's `type`."},
        "data": {"type": "string", "description": "The event, as JSON."},
    },
    "required": ["event", "data"],
}
OPENAI_MODEL_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["model"]},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
    },
    "required": ["id", "object", "created", "owned_by"],
}
OPENAI_MODEL_LIST_SCHEMA = {
    "type": "object",
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data": {"type": "array", "items": OPENAI_MODEL_SCHEMA},
    },
    "required": ["object", "data"],
}
HEALTH_SCHEMA = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
    "required": ["status"],
}
READY_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["status", "checks"],
}
VERSION_SCHEMA = {
    "type": "object",
    "properties": {
        "chatmodels": {"type": "string"},
        "python": {"type": "string"},
        "django": {"type": "string"},
    },
    "required": ["chatmodels", "python", "django"],
}


# ---------------------------------------------------------------------------------------------
# /v1/responses: what `ChatTranslation` accepts (see docs/api.md), and the response object

_NULLABLE_OBJECT = {"type": ["object", "null"]}
_STRING = {"type": "string"}


def _typed(kind: str, fields: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict:
    """An object whose `type` is `kind`, with its required (and optional) fields."""
    return {
        "type": "object",
        "properties": {"type": {"type": "string", "const": kind}, **fields},
        "required": ["type", *(name for name in fields if name not in optional)],
    }


# The chat request's own field schemas, for what is passed on to it unchanged.
_CHAT_FUNCTION = signature.REQUEST_SCHEMA["properties"]["tools"]["items"]["anyOf"][0]["properties"][
    "function"
]
_OPTIONAL_FUNCTION = tuple(
    name for name in _CHAT_FUNCTION["properties"] if name not in _CHAT_FUNCTION["required"]
)
_TEXT_PARTS = [_typed("input_text", {"text": _STRING}), _typed("output_text", {"text": _STRING})]
_REFUSAL_PART = _typed("refusal", {"refusal": {"type": "string", "minLength": 1}})
_INPUT_PARTS = [
    *_TEXT_PARTS,
    _typed("input_image", {"image_url": _STRING}),
    _typed(
        "input_audio",
        {
            "input_audio": {
                "type": "object",
                "properties": {"data": _STRING, "format": _STRING},
                "required": ["data", "format"],
            }
        },
    ),
]


def _message(roles: list[str], contents: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "type": {"type": "string", "const": "message"},
            "role": {"type": "string", "enum": roles},
            "content": {"anyOf": [_STRING, *contents]},
        },
        "required": ["role", "content"],
    }


def _parts(parts: list[dict[str, Any]], **array: Any) -> dict[str, Any]:
    return {"type": "array", "items": {"oneOf": parts}, **array}


_INPUT_ITEM = {
    "oneOf": [
        _message(["user", "system", "developer"], [_parts(_INPUT_PARTS)]),
        # An earlier answer: its text, or its refusal (a message is never both).
        _message(["assistant"], [_parts(_TEXT_PARTS), _parts([_REFUSAL_PART], minItems=1)]),
        _typed("function_call", {"call_id": _STRING, "name": _STRING, "arguments": _STRING}),
        _typed(
            "function_call_output",
            {
                "call_id": _STRING,
                "output": {"oneOf": [_STRING, {"type": "array", "items": {"oneOf": _INPUT_PARTS}}]},
            },
        ),
    ]
}
RESPONSES_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": {"type": "string", "description": "`name`, `name/VERSION` or `name@ALIAS`."},
        "input": {
            "description": "A user message, or a list of message, function_call and "
            "function_call_output items.",
            "oneOf": [
                {"type": "string"},
                {"type": "array", "minItems": 1, "items": _INPUT_ITEM},
            ],
        },
        "instructions": {
            "description": "A system message put first.",
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": _INPUT_ITEM},
                {"type": "null"},
            ],
        },
        "tools": {
            "type": ["array", "null"],
            "items": {
                "oneOf": [
                    # Responses' flat function tool: the chat function's fields beside `type`.
                    _typed("function", _CHAT_FUNCTION["properties"], optional=_OPTIONAL_FUNCTION),
                    {
                        "type": "object",
                        "description": "A tool of another type, passed to the model as it is.",
                        "properties": {"type": {"type": "string", "not": {"const": "function"}}},
                        "required": ["type"],
                    },
                ]
            },
        },
        "tool_choice": {
            "oneOf": [
                _STRING,
                _typed("function", {"name": _STRING}),
                {
                    "type": "object",
                    "properties": {"type": {"not": {"const": "function"}}},
                },
                {"type": "null"},
            ]
        },
        "text": {
            "type": ["object", "null"],
            "properties": {
                "format": {
                    "oneOf": [
                        {"type": "null"},
                        _typed("text", {}),
                        _typed("json_object", {}),
                        _typed(
                            "json_schema",
                            {"name": _STRING, "schema": {"type": "object"}},
                        ),
                    ]
                }
            },
            "description": "`format` json_schema or json_object becomes `response_format`.",
        },
        "max_output_tokens": {"type": ["integer", "null"], "minimum": 16},
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "stream": {"type": ["boolean", "null"]},
        "user": signature.REQUEST_SCHEMA["properties"]["user"],
        "metadata": signature.REQUEST_SCHEMA["properties"]["metadata"],
        "parallel_tool_calls": {"type": ["boolean", "null"]},
        "reasoning": _NULLABLE_OBJECT,
        "store": {"type": ["boolean", "null"], "description": "Accepted; nothing is stored."},
        "previous_response_id": {
            "type": "null",
            "description": "Not supported (400): the server is stateless.",
        },
    },
    "example": {"model": "echo", "input": "Hello!"},
}
RESPONSE_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An OpenAI `response` object; with stream=true, text/event-stream of typed "
    "events (response.created … response.output_text.delta … response.completed).",
    "required": ["id", "object", "created_at", "status", "model", "output"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["response"]},
        "created_at": {"type": "integer"},
        "status": {"type": "string", "enum": ["completed", "incomplete", "failed"]},
        "model": {"type": "string"},
        "output": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object"},
    },
}


# ---------------------------------------------------------------------------------------------
# What each operation takes and answers, with examples that work as they are in Swagger's
# "Try it out" (with the demo model `echo` of the README registered). The errors each operation
# answers are generated from what its view raises (`@raises`, `api/schema.py`).

MODEL_NAME = OpenApiParameter(
    "name",
    str,
    OpenApiParameter.PATH,
    description="A registered model's name.",
    examples=[OpenApiExample("echo", value="echo")],
)
VERSION_NUMBER = OpenApiParameter(
    "version",
    VERSION_NUMBER_SCHEMA,
    OpenApiParameter.PATH,
    examples=[OpenApiExample("1", value=1)],
)
_CHAT_ANSWERS = {
    (200, "application/json"): OpenApiResponse(
        CHAT_RESPONSE_SCHEMA, description="An OpenAI chat.completion"
    ),
    (200, "text/event-stream"): OpenApiResponse(
        CHAT_STREAM_SCHEMA, description="With `stream: true`: " + CHAT_STREAM_SCHEMA["description"]
    ),
}
_HELLO = [{"role": "user", "content": "Hello!"}]

registered_models = extend_schema(tags=["models"])
model_retrieve = extend_schema(parameters=[MODEL_NAME])
invocations = extend_schema(
    summary="Chat with a version of this model",
    description="An OpenAI chat-completions request. The latest ready version by default.",
    parameters=[
        MODEL_NAME,
        OpenApiParameter(
            "version",
            VERSION_NUMBER_SCHEMA,
            description="A version number (give either version or alias, not both).",
        ),
        OpenApiParameter(
            "alias", {"type": "string", "minLength": 1}, description="An alias, such as prod."
        ),
    ],
    request={"application/json": CHAT_REQUEST_SCHEMA},
    responses=_CHAT_ANSWERS,
    examples=[
        OpenApiExample("A question", value={"messages": _HELLO}, request_only=True),
        OpenApiExample(
            "Streamed, with usage",
            value={
                "messages": _HELLO,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            request_only=True,
        ),
    ],
)


def model_versions(view_class: type) -> type:
    """The versions viewset: its list and retrieve operations, under the model's name."""
    view_class = extend_schema(tags=["models"])(view_class)
    return extend_schema_view(
        list=extend_schema(parameters=[MODEL_NAME]),
        retrieve=extend_schema(parameters=[MODEL_NAME, VERSION_NUMBER]),
    )(view_class)


chat_completions = extend_schema(
    tags=["openai"],
    request={"application/json": CHAT_COMPLETIONS_REQUEST_SCHEMA},
    responses=_CHAT_ANSWERS,
    examples=[
        OpenApiExample(
            "A question", value={"model": "echo", "messages": _HELLO}, request_only=True
        ),
        OpenApiExample(
            "Streamed, with usage",
            value={
                "model": "echo",
                "messages": _HELLO,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            request_only=True,
        ),
    ],
)
responses_create = extend_schema(
    tags=["openai"],
    summary="Create a model response (OpenAI Responses API, stateless)",
    request={
        "application/json": {
            **RESPONSES_REQUEST_SCHEMA,
            "properties": {
                **RESPONSES_REQUEST_SCHEMA["properties"],
                "model": MODEL_REFERENCE_SCHEMA,
            },
        }
    },
    responses={
        (200, "application/json"): OpenApiResponse(
            RESPONSE_OBJECT_SCHEMA, description="A response object"
        ),
        (200, "text/event-stream"): OpenApiResponse(
            RESPONSE_EVENT_SCHEMA,
            description="With `stream: true`: " + RESPONSE_EVENT_SCHEMA["description"],
        ),
    },
    examples=[
        OpenApiExample("A question", value={"model": "echo", "input": "Hello!"}, request_only=True),
        OpenApiExample(
            "Streamed, with instructions",
            value={
                "model": "echo",
                "instructions": "Answer briefly.",
                "input": [{"role": "user", "content": "Hello!"}],
                "stream": True,
            },
            request_only=True,
        ),
    ],
)
openai_models = extend_schema(tags=["openai"], responses={200: OPENAI_MODEL_LIST_SCHEMA})
openai_model = extend_schema(
    tags=["openai"],
    operation_id="v1_model_retrieve",
    parameters=[
        OpenApiParameter(
            "model",
            MODEL_REFERENCE_SCHEMA,
            OpenApiParameter.PATH,
            examples=[OpenApiExample("echo", value="echo")],
        )
    ],
    responses={200: OpenApiResponse(OPENAI_MODEL_SCHEMA, description="An OpenAI model")},
)
usage = extend_schema(
    tags=["usage"],
    parameters=[UsageQuerySerializer],
    responses={200: UsageRowSerializer(many=True)},
)
health = extend_schema(tags=["health"], responses={200: HEALTH_SCHEMA})
ready = extend_schema(tags=["health"], responses={200: READY_SCHEMA})
metrics = extend_schema(
    tags=["health"],
    responses={(200, "text/plain"): OpenApiResponse(description="Prometheus text format")},
)
version = extend_schema(tags=["health"], responses={200: VERSION_SCHEMA})
