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

from chatmodels import request_rules, signature
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


def _client_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as a client may send it (`request_rules`): one of OpenAI's roles, content a
    string or a non-empty list, a tool message with the id of the call it answers and a
    function message with the function's name."""
    properties = message["properties"]
    content = properties["content"]
    return {
        **message,
        "properties": {
            **properties,
            "role": {**properties["role"], "enum": list(request_rules.ROLES)},
            "content": {
                **content,
                "anyOf": [
                    {**part, "minItems": 1} if part.get("type") == "array" else part
                    for part in content["anyOf"]
                ],
            },
        },
        "allOf": [
            {
                "if": {"properties": {"role": {"const": role}}, "required": ["role"]},
                "then": {"required": [field], "properties": {field: {"type": "string"}}},
            }
            for role, field in (("tool", "tool_call_id"), ("function", "name"))
        ],
    }


_REQUEST_PROPERTIES = signature.REQUEST_SCHEMA["properties"]
_CLIENT_PROPERTIES = {
    **_REQUEST_PROPERTIES,
    "messages": {
        **_REQUEST_PROPERTIES["messages"],
        "items": _client_message(_REQUEST_PROPERTIES["messages"]["items"]),
    },
    "tool_choice": {
        "description": "`none`, `auto`, `required`, or an object naming one of `tools`.",
        "anyOf": [
            {"type": "string", "enum": list(request_rules.TOOL_CHOICE_MODES)},
            {"type": "object"},
            {"type": "null"},
        ],
        "default": None,
    },
    "stream_options": _STREAM_OPTIONS,
}

# The invocations route: the chat request of the signature as a client may send it (a `model`
# key may only name the URL's model there). stream_options only with stream true, top_logprobs
# only with logprobs true, as OpenAI's API requires.
CHAT_REQUEST_SCHEMA = _openapi(
    {
        **signature.REQUEST_SCHEMA,
        "properties": _CLIENT_PROPERTIES,
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
        # A client's content is a string or a non-empty list of parts, as OpenAI's API requires.
        _message(["user", "system", "developer"], [_parts(_INPUT_PARTS, minItems=1)]),
        # An earlier answer: its text, or its refusal (a message is never both).
        _message(["assistant"], [_parts(_TEXT_PARTS), _parts([_REFUSAL_PART], minItems=1)]),
        _typed("function_call", {"call_id": _STRING, "name": _STRING, "arguments": _STRING}),
        _typed(
            "function_call_output",
            {
                "call_id": _STRING,
                "output": {"oneOf": [_STRING, _parts(_INPUT_PARTS, minItems=1)]},
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
                {"type": "string", "enum": list(request_rules.TOOL_CHOICE_MODES)},
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
        "store": {
            "type": ["boolean", "null"],
            "description": "Keep the response and its items for this API key (default true).",
        },
        "previous_response_id": {
            "type": ["string", "null"],
            "minLength": 1,
            "description": "Continue from a stored response: its input and output items, and "
            "those it continued, come before `input`.",
        },
        "conversation": {
            "description": "Continue a conversation: its items come before `input`, and the "
            "response's input and output items are added to it. Not with previous_response_id.",
            "oneOf": [
                {"type": "string", "minLength": 1},
                {
                    "type": "object",
                    "properties": {"id": {"type": "string", "minLength": 1}},
                    "required": ["id"],
                },
                {"type": "null"},
            ],
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
        "status": {
            "type": "string",
            "enum": ["completed", "incomplete", "failed", "cancelled"],
        },
        "model": {"type": "string"},
        "output": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object"},
    },
}


# Stored state: items as the API lists them, conversations, deletions (`responses_store`).
STORED_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An item (message, function_call, function_call_output…) with its `id`.",
    "properties": {"id": _STRING, "type": _STRING},
    "required": ["id", "type"],
}
ITEM_LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data": {"type": "array", "items": STORED_ITEM_SCHEMA},
        "first_id": {"type": ["string", "null"]},
        "last_id": {"type": ["string", "null"]},
        "has_more": {"type": "boolean"},
    },
    "required": ["object", "data", "first_id", "last_id", "has_more"],
}
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Up to 16 string pairs: keys up to 64 characters, values up to 512.",
    "maxProperties": 16,
    "propertyNames": {"maxLength": 64},
    "additionalProperties": {"type": "string", "maxLength": 512},
}
CONVERSATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": _STRING,
        "object": {"type": "string", "enum": ["conversation"]},
        "created_at": {"type": "integer"},
        "metadata": METADATA_SCHEMA,
    },
    "required": ["id", "object", "created_at", "metadata"],
}
_ITEMS = {"type": "array", "items": _INPUT_ITEM, "maxItems": 20}


def _deleted_schema(kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "id": _STRING,
            "object": {"type": "string", "enum": [f"{kind}.deleted"]},
            "deleted": {"type": "boolean", "enum": [True]},
        },
        "required": ["id", "object", "deleted"],
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
    description="An OpenAI chat-completions request (a model registered from a ResponsesAgent "
    "or a ChatAgent takes its own request format instead, a ResponsesAgentRequest or a "
    "ChatAgentRequest, and answers with its own, as `mlflow models serve` does; its version's "
    "`signature` has their schemas). The latest ready version by default.",
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
    summary="Create a model response (OpenAI Responses API)",
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


# /v1/responses/{response_id} and /v1/conversations: what the API key made (404 for anything
# else, as if it did not exist).
def _path(name: str, example: str) -> OpenApiParameter:
    return OpenApiParameter(
        name, str, OpenApiParameter.PATH, examples=[OpenApiExample(example, value=example)]
    )


RESPONSE_ID = _path("response_id", "resp_123")
CONVERSATION_ID = _path("conversation_id", "conv_123")
ITEM_ID = _path("item_id", "msg_123")
PAGE_PARAMETERS = [
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}),
    OpenApiParameter(
        "order",
        {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
        description="`asc`: oldest first; `desc` (the default): newest first.",
    ),
    OpenApiParameter("after", str, description="List the items after this item id."),
    OpenApiParameter("before", str, description="List the items before this item id."),
]
_RESPONSE = OpenApiResponse(RESPONSE_OBJECT_SCHEMA, description="The stored response object")
_CONVERSATION = OpenApiResponse(CONVERSATION_SCHEMA, description="A conversation")
_ITEM_LIST = OpenApiResponse(ITEM_LIST_SCHEMA, description="A page of items")


def _tagged(**operations: Any) -> Any:
    def declare(view_class: type) -> type:
        view_class = extend_schema(tags=["openai"])(view_class)
        return extend_schema_view(**operations)(view_class)

    return declare


stored_response = _tagged(
    get=extend_schema(
        summary="Retrieve a stored response",
        parameters=[
            RESPONSE_ID,
            OpenApiParameter("stream", {"type": "boolean", "enum": [False]}),
        ],
        responses={200: _RESPONSE},
    ),
    delete=extend_schema(
        summary="Delete a stored response",
        parameters=[RESPONSE_ID],
        responses={200: OpenApiResponse(_deleted_schema("response"), description="Deleted")},
    ),
)
response_input_items = _tagged(
    get=extend_schema(
        summary="List a stored response's input items",
        parameters=[RESPONSE_ID, *PAGE_PARAMETERS],
        responses={200: _ITEM_LIST},
    )
)
conversations = _tagged(
    post=extend_schema(
        summary="Create a conversation",
        request={
            "application/json": {
                "type": "object",
                "properties": {
                    "metadata": {"oneOf": [METADATA_SCHEMA, {"type": "null"}]},
                    "items": {"oneOf": [_ITEMS, {"type": "null"}]},
                },
            }
        },
        responses={200: _CONVERSATION},
        examples=[
            OpenApiExample(
                "With a first message",
                value={"metadata": {"topic": "demo"}, "items": [_HELLO[0]]},
                request_only=True,
            )
        ],
    )
)
conversation = _tagged(
    get=extend_schema(
        summary="Retrieve a conversation",
        parameters=[CONVERSATION_ID],
        responses={200: _CONVERSATION},
    ),
    post=extend_schema(
        # The generated id would repeat POST /v1/conversations' (`v1_conversations_create`).
        operation_id="v1_conversations_update",
        summary="Replace a conversation's metadata",
        parameters=[CONVERSATION_ID],
        request={
            "application/json": {
                "type": "object",
                "properties": {"metadata": METADATA_SCHEMA},
                "required": ["metadata"],
            }
        },
        responses={200: _CONVERSATION},
        examples=[
            OpenApiExample("New metadata", value={"metadata": {"topic": "done"}}, request_only=True)
        ],
    ),
    delete=extend_schema(
        summary="Delete a conversation and its items",
        parameters=[CONVERSATION_ID],
        responses={200: OpenApiResponse(_deleted_schema("conversation"), description="Deleted")},
    ),
)
conversation_items = _tagged(
    get=extend_schema(
        # The generated id would repeat the single item's (`v1_conversations_items_retrieve`).
        operation_id="v1_conversations_items_list",
        summary="List a conversation's items",
        parameters=[CONVERSATION_ID, *PAGE_PARAMETERS],
        responses={200: _ITEM_LIST},
    ),
    post=extend_schema(
        summary="Add items to a conversation",
        parameters=[CONVERSATION_ID],
        request={
            "application/json": {
                "type": "object",
                "properties": {"items": {**_ITEMS, "minItems": 1}},
                "required": ["items"],
            }
        },
        responses={200: OpenApiResponse(ITEM_LIST_SCHEMA, description="The items added")},
        examples=[
            OpenApiExample(
                "A user message",
                value={"items": [{"role": "user", "content": "And tomorrow?"}]},
                request_only=True,
            )
        ],
    ),
)
conversation_item = _tagged(
    get=extend_schema(
        summary="Retrieve an item of a conversation",
        parameters=[CONVERSATION_ID, ITEM_ID],
        responses={200: OpenApiResponse(STORED_ITEM_SCHEMA, description="The item")},
    ),
    delete=extend_schema(
        summary="Delete an item of a conversation",
        parameters=[CONVERSATION_ID, ITEM_ID],
        responses={200: _CONVERSATION},
    ),
)
