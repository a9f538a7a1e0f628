"""The Responses API's request, translated into a chat request (`ChatTranslation`).

`instructions` and `input` items become chat messages; `tools`, `tool_choice`, `text.format`,
`max_output_tokens`, `reasoning`… become chat params; every other key goes to the chat request as
it is. An error names the Responses field the client sent, not the chat field it became.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chatmodels.exceptions import ChatDataError, InvalidRequest
from chatmodels.fields import describe
from chatmodels.types import ChatRequest

# Request keys that are read here (translated), or that are about the stored state and not
# the model (`store`, `previous_response_id`, `conversation`…); every other key goes to the chat
# request as it is (temperature, top_p, user, metadata, parallel_tool_calls, custom_inputs,
# vendor keys…).
_TRANSLATED = frozenset(
    {
        "input",
        "instructions",
        "text",
        "max_output_tokens",
        "tools",
        "tool_choice",
        "reasoning",
        "stream_options",
        # The server's (read by `read_state`, or accepted with the checks in _refuse_unsupported).
        "previous_response_id",
        "conversation",
        "store",
        "background",
        "prompt",
        "include",
        "truncation",
        "max_tool_calls",
    }
)
# A chat error's param → the Responses field the client sent.
_PARAM_NAMES = {"max_tokens": "max_output_tokens", "response_format": "text.format"}
_MESSAGE_PARAM = re.compile(r"^messages\[(\d+)\]")
_TOOL_PARAM = re.compile(r"^(tools\[\d+\])\.function")


def _expected(param: str, what: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"{param}: expected {what}, got {describe(value)}", param=param)


def _string(item: dict[str, Any], key: str, path: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        if value is None:
            raise InvalidRequest(f"{path}.{key}: is required", param=f"{path}.{key}")
        raise _expected(f"{path}.{key}", "a string", value)
    return value


# ---------------------------------------------------------------------------------------------
# The request: Responses → chat


class ChatTranslation:
    """A Responses request as a chat-completions body, and where each message came from."""

    def __init__(self, body: dict[str, Any], *, context: Sequence[dict[str, Any]] = ()) -> None:
        """`context`: the stored items the request continues (from `previous_response_id` or
        `conversation`), which come before `input`; `instructions` come first of all."""
        state = read_state(body)
        self.messages: list[dict[str, Any]] = []
        self.sources: list[str] = []  # messages[i] came from sources[i] (e.g. "input[2]")
        self._read_instructions(body.get("instructions"))
        where = "conversation" if state.conversation_id else "previous_response_id"
        for index, item in enumerate(context):
            self._read_item(item, f"{where}[{index}]")
        self._read_input(body.get("input"))
        chat = {key: value for key, value in body.items() if key not in _TRANSLATED}
        chat["messages"] = self.messages
        tokens = body.get("max_output_tokens")
        if tokens is not None:
            if isinstance(tokens, int | float) and not isinstance(tokens, bool) and tokens < 16:
                raise InvalidRequest(
                    f"max_output_tokens: expected an integer >= 16 (the Responses API's"
                    f" minimum), got {describe(tokens)}",
                    param="max_output_tokens",
                )
            chat["max_tokens"] = tokens
        if body.get("tools") is not None:
            chat["tools"] = _chat_tools(body["tools"])
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
        chat.update(_text_params(body.get("text")))
        effort = _reasoning_effort(body.get("reasoning"))
        if effort is not None:
            chat["reasoning_effort"] = effort
        self.chat_body = chat

    def chat_request(self) -> ChatRequest:
        """The ChatRequest; a field it refuses is named as the client sent it."""
        try:
            return ChatRequest.from_dict(self.chat_body)
        except ChatDataError as error:
            param = self.client_param(error.param)
            message = error.message
            if param and error.param and param != error.param and message.startswith(error.param):
                message = param + message[len(error.param) :]
            raise ChatDataError(message, param=param) from None

    def client_param(self, param: str | None) -> str | None:
        if not param:
            return param
        if param in _PARAM_NAMES:
            return _PARAM_NAMES[param]
        found = _MESSAGE_PARAM.match(param)
        if found and int(found[1]) < len(self.sources):
            return self.sources[int(found[1])] + param[found.end() :]
        return _TOOL_PARAM.sub(r"\1", param)

    # -- messages

    def _add(self, message: dict[str, Any], source: str) -> None:
        self.messages.append(message)
        self.sources.append(source)

    def _read_instructions(self, instructions: Any) -> None:
        if instructions is None:
            return
        if isinstance(instructions, str):
            # The spec calls instructions a developer message; `system` is the role every chat
            # model knows, and means the same to it.
            self._add({"role": "system", "content": instructions}, "instructions")
        elif isinstance(instructions, list):
            for index, item in enumerate(instructions):
                self._read_item(item, f"instructions[{index}]")
        else:
            raise _expected("instructions", "a string or a list of input items", instructions)

    def _read_input(self, items: Any) -> None:
        if items is None:
            raise InvalidRequest(
                "input: is required (a string, or a list of input items)", param="input"
            )
        if isinstance(items, str):
            self._add({"role": "user", "content": items}, "input")
            return
        if not isinstance(items, list):
            raise _expected("input", "a string or a list of input items", items)
        if not items:
            raise InvalidRequest("input: expected at least one input item, got []", param="input")
        for index, item in enumerate(items):
            self._read_item(item, f"input[{index}]")

    def _read_item(self, item: Any, path: str) -> None:
        if not isinstance(item, dict):
            raise _expected(path, "an input item (object)", item)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            self._add(_chat_message(item, path), path)
        elif kind == "function_call":
            call = {
                "id": _string(item, "call_id", path),
                "type": "function",
                "function": {
                    "name": _string(item, "name", path),
                    "arguments": _string(item, "arguments", path),
                },
            }
            last = self.messages[-1] if self.messages else None
            if last is not None and last["role"] == "assistant":
                # Text and calls of one assistant turn are one chat message.
                last.setdefault("tool_calls", []).append(call)
            else:
                self._add({"role": "assistant", "content": None, "tool_calls": [call]}, path)
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, (str, list)):
                raise _expected(f"{path}.output", "a string or a list of content parts", output)
            content: str | list[dict[str, Any]]
            if isinstance(output, str):
                content = output
            else:
                content = _chat_content(_chat_parts(output, f"{path}.output"))
            message = {"role": "tool", "tool_call_id": _string(item, "call_id", path)}
            self._add({**message, "content": content}, path)
        elif kind == "reasoning":
            pass  # a chat model takes no reasoning items (and none answers with one)
        elif kind == "item_reference":
            raise InvalidRequest(
                f"{path}: item references are not supported; send the item itself, or continue "
                "with previous_response_id or conversation",
                param=path,
            )
        else:
            raise InvalidRequest(
                f"{path}.type: {kind!r} is not supported; expected 'message', 'function_call' "
                "or 'function_call_output'",
                param=f"{path}.type",
            )


@dataclass(frozen=True)
class ResponseState:
    """What a request says about stored state: whether to keep the response, and what it
    continues (at most one of a previous response and a conversation)."""

    store: bool = True
    previous_response_id: str | None = None
    conversation_id: str | None = None


def read_state(body: dict[str, Any]) -> ResponseState:
    """The request's `store`, `previous_response_id` and `conversation` (a conversation id or
    `{"id": ...}`), checked; what this server does not do (`prompt`, `background`) is refused."""
    if body.get("prompt") is not None:
        raise InvalidRequest(
            "prompt: is not supported: this server keeps no prompt templates; send the "
            "instructions and input themselves",
            param="prompt",
        )
    if body.get("background"):
        raise InvalidRequest(
            "background: is not supported: a response is answered while the request is open "
            "(stream it to see it as it comes)",
            param="background",
        )
    store = body.get("store")
    if not isinstance(store, (bool, type(None))):
        raise _expected("store", "a boolean", store)
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise _expected("previous_response_id", "a response id (string)", previous)
    conversation = body.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
        if not isinstance(conversation, str) or not conversation:
            raise _expected("conversation.id", "a conversation id (string)", conversation)
    elif conversation is not None and (not isinstance(conversation, str) or not conversation):
        raise _expected("conversation", "a conversation id or {'id': ...}", conversation)
    if previous is not None and conversation is not None:
        raise InvalidRequest(
            "conversation: give either previous_response_id or conversation, not both",
            param="conversation",
        )
    return ResponseState(store is not False, previous, conversation)


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's `input` as a list of items (a string is one user message)."""
    items = body.get("input")
    if isinstance(items, str):
        return [{"type": "message", "role": "user", "content": items}]
    return list(items or ())


def check_input_items(items: Any, param: str) -> list[dict[str, Any]]:
    """`items` if it is a non-empty list of input items this server reads, else a 400 naming
    the item (`param[i]...`) as the client sent it."""
    try:
        # Read as /v1/responses reads its input, down to the chat messages a model would get.
        ChatTranslation({"input": items}).chat_request()
    except (InvalidRequest, ChatDataError) as error:
        name = error.param or ""
        if name.startswith("input"):
            renamed = param + name[len("input") :]
            message = error.message.replace(name, renamed, 1)
            raise InvalidRequest(message, param=renamed) from None
        raise InvalidRequest(error.message, param=error.param) from None
    if isinstance(items, str):
        raise _expected(param, "a list of input items", items)
    return items


def _chat_message(item: dict[str, Any], path: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise _expected(f"{path}.role", "'user', 'assistant', 'system' or 'developer'", role)
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _expected(f"{path}.content", "a string or a list of content parts", content)
    parts = _chat_parts(content, f"{path}.content")
    if role != "assistant":
        return {"role": role, "content": _chat_content(parts)}
    # An assistant turn (an earlier output) is text, as chat models expect it back.
    message: dict[str, Any] = {"role": "assistant"}
    refusals = [part["refusal"] for part in parts if part["type"] == "refusal"]
    texts = [part["text"] for part in parts if part["type"] == "text"]
    if len(texts) + len(refusals) != len(parts):
        raise InvalidRequest(
            f"{path}.content: an assistant message takes only output_text and refusal parts",
            param=f"{path}.content",
        )
    message["content"] = "".join(texts) if texts or not refusals else None
    if refusals:
        message["refusal"] = "".join(refusals)
    return message


def _chat_parts(parts: list[Any], path: str) -> list[dict[str, Any]]:
    return [_chat_part(part, f"{path}[{index}]") for index, part in enumerate(parts)]


def _chat_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Chat content parts as a model most often reads them: a lone text part as a string."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _chat_part(part: Any, path: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise _expected(path, "a content part (object)", part)
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": _string(part, "text", path)}
    if kind == "refusal":
        return {"type": "refusal", "refusal": _string(part, "refusal", path)}
    if kind == "input_image":
        if part.get("image_url") is None and part.get("file_id") is not None:
            raise InvalidRequest(
                f"{path}.file_id: is not supported: this server keeps no files; "
                "send image_url (a URL or a data: URL)",
                param=f"{path}.file_id",
            )
        image = {"url": _string(part, "image_url", path)}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        fields = {key: value for key, value in part.items() if key != "type" and value is not None}
        return {"type": "file", "file": fields}
    if kind == "input_audio":
        return {"type": "input_audio", "input_audio": part.get("input_audio")}
    raise InvalidRequest(
        f"{path}.type: {kind!r} is not supported; expected 'input_text', 'output_text', "
        "'refusal', 'input_image', 'input_file' or 'input_audio'",
        param=f"{path}.type",
    )


def _chat_tools(tools: Any) -> list[Any]:
    """Responses' flat function tools as chat's nested ones; other tools pass as they are."""
    if not isinstance(tools, list):
        raise _expected("tools", "a list of tools", tools)
    chat_tools = []
    for index, tool in enumerate(tools):
        path = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise _expected(path, "a tool (object)", tool)
        if not isinstance(tool.get("type"), str):
            raise _expected(f"{path}.type", "a string", tool.get("type"))
        if tool.get("type") != "function":
            chat_tools.append(tool)  # the model decides what it makes of it
            continue
        function = {"name": _string(tool, "name", path)}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        chat_tools.append({"type": "function", "function": function})
    return chat_tools


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if not isinstance(choice, dict):
        raise _expected("tool_choice", "'none', 'auto', 'required' or an object", choice)
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": _string(choice, "name", "tool_choice")}}
    return choice


def _text_params(text: Any) -> dict[str, Any]:
    """`text.format` as chat's `response_format` (and `text.verbosity` as `verbosity`)."""
    if text is None:
        return {}
    if not isinstance(text, dict):
        raise _expected("text", "an object", text)
    params: dict[str, Any] = {}
    if text.get("verbosity") is not None:
        params["verbosity"] = text["verbosity"]
    form = text.get("format")
    if form is None:
        return params
    if not isinstance(form, dict):
        raise _expected("text.format", "an object", form)
    kind = form.get("type")
    if kind == "text":
        return params  # plain text is what a chat model answers anyway
    if kind == "json_object":
        return {**params, "response_format": {"type": "json_object"}}
    if kind == "json_schema":
        schema = {"name": _string(form, "name", "text.format")}
        if not isinstance(form.get("schema"), dict):
            raise _expected("text.format.schema", "a JSON Schema object", form.get("schema"))
        for key in ("schema", "description", "strict"):
            if form.get(key) is not None:
                schema[key] = form[key]
        return {**params, "response_format": {"type": "json_schema", "json_schema": schema}}
    raise _expected("text.format.type", "'text', 'json_object' or 'json_schema'", kind)


def _reasoning_effort(reasoning: Any) -> Any:
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise _expected("reasoning", "an object", reasoning)
    return reasoning.get("effort")
