"""The OpenAI API's rules across the fields of a chat request, which field types alone cannot say:
message roles and what each role needs, `top_logprobs` with `logprobs`, a `tool_choice` that names
a tool given in `tools`, the shape of `response_format`. Each failure is a 400 naming the field.

They hold for what a client sends (`ChatRequest`); a model's own code may build messages and
params as it likes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatmodels.exceptions import ChatDataError, EmptyArray, MissingParameter
from chatmodels.fields import join

if TYPE_CHECKING:
    from chatmodels.types import ChatMessage, ChatRequest

# `function` is the legacy role of a function's result (before tool calls); OpenAI still takes it.
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
TOOL_CHOICE_MODES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")


def check(request: ChatRequest, path: str = "") -> None:
    for i, message in enumerate(request.messages):
        _check_message(message, join(path, f"messages[{i}]"))
    if request.top_logprobs is not None and request.logprobs is not True:
        field = join(path, "top_logprobs")
        raise ChatDataError(f"{field}: needs logprobs set to true", param=field)
    if request.tool_choice is not None:
        _check_tool_choice(request.tool_choice, request.tools or [], join(path, "tool_choice"))
    if request.response_format is not None:
        _check_response_format(request.response_format, join(path, "response_format"))


def _check_message(message: ChatMessage, path: str) -> None:
    role = message.role
    if role not in ROLES:
        field = f"{path}.role"
        allowed = ", ".join(repr(name) for name in ROLES)
        raise ChatDataError(f"{field}: expected one of {allowed}, got {role!r}", param=field)
    if message.content == []:
        field = f"{path}.content"
        raise EmptyArray(
            f"{field}: expected a string or a non-empty list of content parts, got []",
            param=field,
        )
    if role == "tool" and message.tool_call_id is None:
        field = f"{path}.tool_call_id"
        raise MissingParameter(
            f"{field}: is required in a tool message (the id of the call it answers)", param=field
        )
    if role == "function" and message.name is None:
        field = f"{path}.name"
        raise MissingParameter(
            f"{field}: is required in a function message (the function's name)", param=field
        )


def _tool_names(tools: list[Any], kind: str) -> set[str]:
    """The names of the tools of one type (`function`, `custom`) among those given."""
    names = set()
    for tool in tools:
        if isinstance(tool, dict):
            if tool.get("type") == kind and isinstance(tool.get(kind), dict):
                names.add(tool[kind].get("name"))
        elif kind == "function":
            names.add(tool.function.name)
    return names


def _check_tool_choice(choice: str | dict[str, Any], tools: list[Any], path: str) -> None:
    if isinstance(choice, str):
        if choice not in TOOL_CHOICE_MODES:
            allowed = ", ".join(repr(mode) for mode in TOOL_CHOICE_MODES)
            raise ChatDataError(
                f"{path}: expected one of {allowed} or an object, got {choice!r}", param=path
            )
        return
    kind = choice.get("type")
    if kind not in ("function", "custom") or not isinstance(choice.get(kind), dict):
        # allowed_tools, a Responses hosted tool…: the model decides what it makes of it.
        return
    named = choice.get(kind)
    name = named.get("name") if isinstance(named, dict) else None
    if not isinstance(name, str):
        field = f"{path}.{kind}.name"
        raise MissingParameter(f"{field}: is required (the tool to call)", param=field)
    if name not in _tool_names(tools, kind):
        raise ChatDataError(
            f"{path}: names the {kind} tool {name!r}, which is not among the request's tools",
            param=path,
        )


def _check_response_format(response_format: dict[str, Any], path: str) -> None:
    kind = response_format.get("type")
    if kind not in RESPONSE_FORMATS:
        field = f"{path}.type"
        allowed = ", ".join(repr(name) for name in RESPONSE_FORMATS)
        if kind is None:
            raise MissingParameter(f"{field}: is required ({allowed})", param=field)
        raise ChatDataError(f"{field}: expected one of {allowed}, got {kind!r}", param=field)
    if kind != "json_schema":
        return
    schema = response_format.get("json_schema")
    field = f"{path}.json_schema"
    if schema is None:
        raise MissingParameter(f"{field}: is required with type 'json_schema'", param=field)
    if not isinstance(schema, dict):
        raise ChatDataError(f"{field}: expected an object", param=field)
    if not isinstance(schema.get("name"), str):
        raise MissingParameter(f"{field}.name: is required (a string)", param=f"{field}.name")
    if "schema" in schema and not isinstance(schema["schema"], dict):
        raise ChatDataError(
            f"{field}.schema: expected a JSON Schema object", param=f"{field}.schema"
        )
