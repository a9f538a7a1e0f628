"""The signature every ChatModel gets (request and response JSON Schema) and its input example.

The schemas are generated from the chat types' declarations (chatmodels.fields), so they say
exactly what `ChatRequest.from_dict` and `ChatResponse.validate` accept.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatmodels.exceptions import ChatDataError, SignatureNotAllowed
from chatmodels.fields import object_schema
from chatmodels.types import ChatMessage, ChatRequest, ChatResponse

DEFAULT_INPUT_EXAMPLE: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Hello!"}],
    "temperature": 1.0,
    "max_tokens": 10,
    "stop": ["\n"],
    "n": 1,
    "stream": False,
}

_DIALECT = "https://json-schema.org/draft/2020-12/schema"

REQUEST_SCHEMA: dict[str, Any] = {"$schema": _DIALECT, **object_schema(ChatRequest)}
RESPONSE_SCHEMA: dict[str, Any] = {"$schema": _DIALECT, **object_schema(ChatResponse)}


def chat_signature() -> dict[str, Any]:
    """The signature of every ChatModel: `{"inputs": <JSON Schema>, "outputs": <JSON Schema>}`."""
    return {"inputs": copy.deepcopy(REQUEST_SCHEMA), "outputs": copy.deepcopy(RESPONSE_SCHEMA)}


def ensure_generated(signature: Any) -> None:
    """Refuse a caller-supplied signature: ChatModel signatures are always generated."""
    if signature is not None:
        raise SignatureNotAllowed(
            "ChatModel signatures are generated automatically; do not pass a signature"
        )


def input_example_dict(example: Any) -> dict[str, Any]:
    """An input example in any form MLflow's `save_model` takes, as a request dict.

    A dict (a chat request); a list of messages (`ChatMessage` objects or dicts); or a pair
    `(request dict or list of messages, params dict)`, the params overriding the request's.
    """
    params: Mapping[str, Any] = {}
    if isinstance(example, tuple) and len(example) == 2 and isinstance(example[1], Mapping):
        example, params = example
    if isinstance(example, list):
        request: dict[str, Any] = {"messages": example}
    elif isinstance(example, Mapping):
        request = dict(example)
    else:
        raise ChatDataError(
            "input example: expected a JSON object (a chat request), a list of messages or"
            f" a (messages, params) pair, got {type(example).__name__}",
            param=None,
        )
    messages = request.get("messages")
    if isinstance(messages, list):
        request["messages"] = [
            message.to_dict() if isinstance(message, ChatMessage) else message
            for message in messages
        ]
    return {**request, **params}


def check_input_example(example: Any) -> ChatRequest:
    """Validate a caller-supplied input example (any form `input_example_dict` takes), naming
    the field that is wrong."""
    request = ChatRequest.from_dict(input_example_dict(example))
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
    # Required only in one of several kinds of object (a `text` content part's `text`): its title.
    required_in: str = ""


def signature_rows(schema: dict[str, Any]) -> list[SignatureRow]:
    """Flatten a JSON Schema object into rows, nested fields (`messages[].role`) included.

    Alternatives (`anyOf`) are walked too; a field met again under the same path (the `type`
    of each kind of content part) is listed once."""
    rows: list[SignatureRow] = []
    _collect(schema, "", 0, rows, set())
    return rows


def _collect(
    schema: dict[str, Any],
    prefix: str,
    depth: int,
    rows: list[SignatureRow],
    seen: set[str],
    kind: str = "",
) -> None:
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if path in seen:
            continue
        seen.add(path)
        rows.append(
            SignatureRow(
                field=path,
                type=_type_label(prop),
                required=name in required,
                default=_default_label(prop),
                description=prop.get("description", ""),
                depth=depth,
                required_in=kind if name in required else "",
            )
        )
        objects = list(_children(prop))
        # Alternative kinds (content parts): a field is required in its own kind only.
        several = sum(1 for nested, _suffix in objects if nested.get("title")) > 1
        for nested, suffix in objects:
            kind_of = nested.get("title", "") if several else ""
            _collect(nested, f"{path}{suffix}.", depth + 1, rows, seen, kind_of)


def _children(prop: dict[str, Any], suffix: str = ""):
    """The object schemas inside `prop` (through `anyOf` and array `items`), with the path
    suffix that leads to them ("" or "[]")."""
    if "properties" in prop:
        yield prop, suffix
    for option in prop.get("anyOf", ()):
        yield from _children(option, suffix)
    items = prop.get("items")
    if isinstance(items, dict) and not suffix:
        yield from _children(items, "[]")


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
