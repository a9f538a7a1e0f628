"""The signature every ChatModel gets (request and response JSON Schema) and its input example."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from chatmodels.exceptions import ChatDataError, SignatureNotAllowed
from chatmodels.types import ChatRequest

DEFAULT_INPUT_EXAMPLE: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Hello!"}],
    "temperature": 1.0,
    "max_tokens": 10,
    "stop": ["\n"],
    "n": 1,
    "stream": False,
}

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}

_CONTENT_PART = {
    "type": "object",
    "title": "Content part",
    "description": "A text, image_url or input_audio part of a message.",
    "properties": {
        "type": {"type": "string", "enum": ["text", "image_url", "input_audio"]},
        "text": _STRING,
        "image_url": {
            "type": "object",
            "properties": {"url": _STRING, "detail": _STRING},
            "required": ["url"],
        },
        "input_audio": {
            "type": "object",
            "properties": {"data": _STRING, "format": _STRING},
            "required": ["data", "format"],
        },
    },
    "required": ["type"],
}

_TOOL_CALL = {
    "type": "object",
    "title": "Tool call",
    "properties": {
        "id": {"type": "string", "description": "Identifier the tool result refers back to."},
        "type": {"type": "string", "default": "function"},
        "function": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "Function to call."},
                "arguments": {"type": "string", "description": "JSON-encoded arguments."},
            },
            "required": ["name", "arguments"],
        },
    },
    "required": ["function"],
}

_MESSAGE = {
    "type": "object",
    "title": "Message",
    "properties": {
        "role": {
            "type": "string",
            "description": "Who wrote it: system, user, assistant or tool.",
        },
        "content": {
            "description": "The text, or a list of content parts.",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": _CONTENT_PART},
                {"type": "null"},
            ],
        },
        "refusal": {**_NULLABLE_STRING, "description": "Refusal message from the assistant."},
        "name": {**_NULLABLE_STRING, "description": "Name of the participant."},
        "tool_calls": {"type": ["array", "null"], "items": _TOOL_CALL},
        "tool_call_id": {
            **_NULLABLE_STRING,
            "description": "For role tool: the call this answers.",
        },
    },
    "required": ["role"],
}

_TOOL_DEFINITION = {
    "type": "object",
    "title": "Tool",
    "properties": {
        "type": {"type": "string", "default": "function"},
        "function": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "Function name."},
                "description": {"type": "string"},
                "parameters": {"type": "object", "description": "JSON Schema of the arguments."},
                "strict": {"type": "boolean", "default": False},
            },
            "required": ["name"],
        },
    },
    "required": ["function"],
}

REQUEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Chat request",
    "description": "An OpenAI chat-completions request; other keys are accepted and ignored.",
    "type": "object",
    "properties": {
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": _MESSAGE,
            "description": "The conversation so far.",
        },
        "temperature": {"type": "number", "minimum": 0, "default": 1.0},
        "max_tokens": {"type": ["integer", "null"], "minimum": 1, "default": None},
        "stop": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
                {"type": "null"},
            ],
            "default": None,
            "description": "Sequences where generation stops.",
        },
        "n": {"type": "integer", "minimum": 1, "default": 1},
        "stream": {"type": "boolean", "default": False},
        "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1, "default": None},
        "top_k": {"type": ["integer", "null"], "default": None},
        "frequency_penalty": {"type": ["number", "null"], "default": None},
        "presence_penalty": {"type": ["number", "null"], "default": None},
        "custom_inputs": {
            "type": ["object", "null"],
            "default": None,
            "description": "Free-form inputs for this model.",
        },
        "tools": {"type": ["array", "null"], "items": _TOOL_DEFINITION, "default": None},
    },
    "required": ["messages"],
    "additionalProperties": True,
}

_USAGE = {
    "type": "object",
    "title": "Token usage",
    "properties": {
        "prompt_tokens": {"type": ["integer", "null"]},
        "completion_tokens": {"type": ["integer", "null"]},
        "total_tokens": {"type": ["integer", "null"]},
    },
}

RESPONSE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Chat response",
    "description": "An OpenAI chat.completion object.",
    "type": "object",
    "properties": {
        "id": {"type": ["string", "null"]},
        "object": {"type": "string", "default": "chat.completion"},
        "created": {"type": "integer", "description": "Unix time in seconds."},
        "model": {"type": ["string", "null"]},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "title": "Choice",
                "properties": {
                    "index": {"type": "integer", "default": 0},
                    "message": _MESSAGE,
                    "finish_reason": {**_NULLABLE_STRING, "default": "stop"},
                    "logprobs": {"type": ["object", "null"]},
                },
                "required": ["message"],
            },
        },
        "usage": {**_USAGE, "type": ["object", "null"]},
        "custom_outputs": {"type": ["object", "null"]},
    },
    "required": ["choices"],
}


def chat_signature() -> dict[str, Any]:
    """The signature of every ChatModel: `{"inputs": <JSON Schema>, "outputs": <JSON Schema>}`."""
    return {"inputs": copy.deepcopy(REQUEST_SCHEMA), "outputs": copy.deepcopy(RESPONSE_SCHEMA)}


def ensure_generated(signature: Any) -> None:
    """Refuse a caller-supplied signature: ChatModel signatures are always generated."""
    if signature is not None:
        raise SignatureNotAllowed(
            "ChatModel signatures are generated automatically; do not pass a signature"
        )


def check_input_example(example: Any) -> ChatRequest:
    """Validate a caller-supplied input example, naming the field that is wrong."""
    if not isinstance(example, dict):
        raise ChatDataError(
            f"input example: expected a JSON object, got {type(example).__name__}", param=None
        )
    request = ChatRequest.from_dict(example)
    if request.stream:
        raise ChatDataError(
            "input example: stream must be false (registration calls predict)", param="stream"
        )
    return request


@dataclass(frozen=True)
class SignatureRow:
    """One field of a signature, as people read it in the admin."""

    field: str
    type: str
    required: bool
    default: str
    description: str
    depth: int


def signature_rows(schema: dict[str, Any]) -> list[SignatureRow]:
    """Flatten a JSON Schema object into rows, nested fields (`messages[].role`) included."""
    rows: list[SignatureRow] = []
    _collect(schema, "", 0, rows)
    return rows


def _collect(schema: dict[str, Any], prefix: str, depth: int, rows: list[SignatureRow]) -> None:
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        rows.append(
            SignatureRow(
                field=path,
                type=_type_label(prop),
                required=name in required,
                default=_default_label(prop),
                description=prop.get("description", ""),
                depth=depth,
            )
        )
        for nested, suffix in _children(prop):
            _collect(nested, f"{path}{suffix}.", depth + 1, rows)


def _children(prop: dict[str, Any]):
    if "properties" in prop:
        yield prop, ""
    items = prop.get("items")
    if isinstance(items, dict) and "properties" in items:
        yield items, "[]"
    for option in prop.get("anyOf", ()):
        option_items = option.get("items")
        if isinstance(option_items, dict) and "properties" in option_items:
            yield option_items, "[]"


def _type_label(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " | ".join(_type_label(option) for option in prop["anyOf"])
    kind = prop.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    labels = []
    for k in kinds:
        if k == "array":
            items = prop.get("items", {})
            inner = items.get("title") or _type_label(items) if items else "any"
            labels.append(f"array of {inner}")
        elif k == "object" and prop.get("title"):
            labels.append(prop["title"])
        else:
            labels.append(k)
    if "enum" in prop:
        labels.append("one of " + ", ".join(map(str, prop["enum"])))
    return " | ".join(labels)


def _default_label(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return ""
    default = prop["default"]
    if default is None:
        return "null"
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)
