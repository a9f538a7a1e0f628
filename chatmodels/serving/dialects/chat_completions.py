"""The OpenAI chat-completions format, as is: `/api/models/<name>/invocations`,
`/v1/chat/completions` and the admin playground speak it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chatmodels.exceptions import ChatModelsError, InvalidRequest, MissingParameter
from chatmodels.serving import errors, runtime
from chatmodels.serving.dialects.base import KEEP_ALIVE_EVENT, ParsedChat, sse
from chatmodels.types import ChatRequest


class ChatCompletionsDialect:
    """The OpenAI chat-completions format, as is (invocations, /v1/chat/completions)."""

    def parse(self, body: dict[str, Any]) -> ParsedChat:
        request = ChatRequest.from_dict(_legacy_tool_calls(body))
        # stream_options is checked even without stream: a bad one is a 400 either way.
        include_usage = _include_usage(body)
        if body.get("stream_options") is not None and not request.stream:
            raise InvalidRequest(
                "stream_options: only allowed when stream is true", param="stream_options"
            )
        return ParsedChat(request, include_usage and request.stream)

    def completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        return completion

    def begin(self) -> Iterator[bytes]:
        return iter(())

    def event(self, chunk: dict[str, Any] | None) -> Iterator[bytes]:
        yield KEEP_ALIVE_EVENT if chunk is runtime.KEEP_ALIVE else sse(chunk)

    def end(self) -> Iterator[bytes]:
        yield b"data: [DONE]\n\n"

    def failed(self, error: ChatModelsError) -> Iterator[bytes]:
        # No [DONE]: the OpenAI SDKs raise APIError on an `error` event.
        yield sse(errors.error_body(error))

    def cut(self, error: ChatModelsError) -> Iterator[bytes]:
        # The error, then [DONE]: a client reading to the end knows the stream is over.
        yield sse(errors.error_body(error))
        yield b"data: [DONE]\n\n"


CHAT_COMPLETIONS = ChatCompletionsDialect()
# `/api/models/<name>/invocations`: the same for a ChatModel; an agent answers it in its own
# format (`agents.OwnFormatDialect`), as `mlflow models serve` does.
INVOCATIONS = ChatCompletionsDialect()


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("stream_options: expected an object", param="stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise InvalidRequest(
            "stream_options.include_usage: expected a boolean", param="stream_options.include_usage"
        )
    return include


def _legacy_tool_calls(body: dict[str, Any]) -> dict[str, Any]:
    """Tool calls of a history in the forms OpenAI takes beside function calls, as the model's
    ToolCalls: an assistant message's legacy `function_call` (one call of type function), and a
    `custom` tool call (type custom, its input in function.arguments)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not any(_has_legacy_call(m) for m in messages):
        return body
    return {
        **body,
        "messages": [
            _with_tool_calls(message, f"messages[{i}]") for i, message in enumerate(messages)
        ],
    }


def _has_legacy_call(message: Any) -> bool:
    if not isinstance(message, dict):
        return False
    if message.get("function_call") is not None and not message.get("tool_calls"):
        return True
    calls = message.get("tool_calls")
    return isinstance(calls, list) and any(_is_custom_call(call) for call in calls)


def _is_custom_call(call: Any) -> bool:
    return isinstance(call, dict) and call.get("type") == "custom" and "function" not in call


def _with_tool_calls(message: Any, path: str) -> Any:
    if not _has_legacy_call(message):
        return message
    message = dict(message)
    if message.get("function_call") is not None and not message.get("tool_calls"):
        # No id in the legacy form: the `function` message that answers it names the function.
        message["tool_calls"] = [{"type": "function", "function": message.pop("function_call")}]
        return message
    message["tool_calls"] = [
        _custom_as_tool_call(call, f"{path}.tool_calls[{j}]") if _is_custom_call(call) else call
        for j, call in enumerate(message["tool_calls"])
    ]
    return message


def _custom_as_tool_call(call: dict[str, Any], path: str) -> dict[str, Any]:
    custom = call.get("custom")
    for key, value in (("id", call.get("id")), ("custom", custom)):
        if value is None:
            raise MissingParameter(f"{path}.{key}: is required", param=f"{path}.{key}")
    if not isinstance(custom, dict):
        raise InvalidRequest(f"{path}.custom: expected an object", param=f"{path}.custom")
    for key in ("name", "input"):
        if not isinstance(custom.get(key), str):
            field = f"{path}.custom.{key}"
            raise MissingParameter(f"{field}: is required (a string)", param=field)
    function = {"name": custom["name"], "arguments": custom["input"]}
    return {"id": call["id"], "type": "custom", "function": function}
