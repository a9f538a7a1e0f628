"""Between an agent's own formats and the chat-completions and Responses formats: requests in,
answers and stream items out. Plain dicts, Django-free.

Every agent's output is read as Responses output items: a ResponsesAgent's are; a ChatAgent's
messages become them (assistant text: a `message` item; its tool calls: `function_call` items;
a tool message: a `function_call_output` item). A ChatAgent's stream is read as ResponsesAgent
stream events the same way (`ChatAgentEvents`). What the routes write is then made from items
and events alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from chatmodels.exceptions import InvalidModelOutput
from chatmodels.interfaces import CHAT_AGENT, RESPONSES_AGENT

ITEM_DONE = "response.output_item.done"
TEXT_DELTA = "response.output_text.delta"
COMPLETED = "response.completed"


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


# ---------------------------------------------------------------------------------------------
# Requests


def _text_of(content: Any) -> str:
    """Chat content (a string or parts) as text: the text parts, joined."""
    if isinstance(content, str):
        return content
    if not content:
        return ""
    return "".join(part.get("text") or "" for part in content if isinstance(part, dict))


def _input_parts(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat content parts as Responses input content parts."""
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "input_text", "text": part["text"]})
        elif kind == "image_url":
            image = part["image_url"]
            parts.append(
                {"type": "input_image", "image_url": image["url"], "detail": image.get("detail")}
            )
        elif kind == "file":
            parts.append({"type": "input_file", **part.get("file", {})})
    return parts


def chat_messages_to_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-completions messages as Responses input items (what a ResponsesAgent takes)."""
    items: list[dict[str, Any]] = []
    for message in messages:
        role, content = message["role"], message.get("content")
        if role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message["tool_call_id"],
                    "output": _text_of(content),
                }
            )
            continue
        if role == "assistant":
            if content or message.get("refusal"):
                items.append({"role": "assistant", "content": _text_of(content)})
            for call in message.get("tool_calls") or ():
                function = call["function"]
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call["id"],
                        "name": function["name"],
                        "arguments": function["arguments"],
                    }
                )
            continue
        if isinstance(content, list):
            items.append({"role": role, "content": _input_parts(content)})
        else:
            items.append({"role": role, "content": content or ""})
    return items


def chat_messages_to_agent_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-completions messages as ChatAgentMessage dicts: text content, and a tool message's
    `name` (which ChatAgent requires) from the call it answers."""
    names: dict[str, str] = {}
    result = []
    for message in messages:
        agent_message: dict[str, Any] = {"role": message["role"]}
        content = message.get("content")
        tool_calls = message.get("tool_calls")
        if content is not None or not tool_calls:
            agent_message["content"] = _text_of(content)
        if tool_calls:
            agent_message["tool_calls"] = [
                {"id": call["id"], "type": "function", "function": call["function"]}
                for call in tool_calls
            ]
            names.update((call["id"], call["function"]["name"]) for call in tool_calls)
        for key in ("name", "tool_call_id"):
            if message.get(key) is not None:
                agent_message[key] = message[key]
        if message["role"] == "tool" and "name" not in agent_message:
            agent_message["name"] = names.get(message.get("tool_call_id") or "", "tool")
        result.append(agent_message)
    return result


def chat_tools_to_responses(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat `tools` (`{"type": "function", "function": {...}}`) as Responses function tools."""
    result = []
    for tool in tools:
        function = tool.get("function") or {}
        result.append(
            {
                "type": "function",
                "name": function.get("name"),
                "description": function.get("description"),
                "parameters": function.get("parameters") or {},
                "strict": function.get("strict"),
            }
        )
    return result


def chat_tool_choice_to_responses(choice: Any) -> Any:
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "function", "name": choice["function"].get("name")}
    return choice


# ---------------------------------------------------------------------------------------------
# Answers as output items


def chat_agent_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ChatAgent's answer messages as Responses output items (user and system messages, if
    it repeats them, are not output)."""
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            if message.get("content"):
                items.append(text_item(message["content"], message.get("id") or new_id("msg")))
            for call in message.get("tool_calls") or ():
                items.append(
                    {
                        "type": "function_call",
                        "id": new_id("fc"),
                        "call_id": call["id"],
                        "name": call["function"].get("name") or "",
                        "arguments": call["function"].get("arguments") or "",
                    }
                )
        elif role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.get("tool_call_id") or "",
                    "output": message.get("content") or "",
                }
            )
    return items


def text_item(text: str, item_id: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def answer_items(interface: str, answer: dict[str, Any]) -> list[dict[str, Any]]:
    """An agent's answer as Responses output items."""
    if interface == RESPONSES_AGENT:
        return list(answer.get("output") or [])
    return chat_agent_items(answer.get("messages") or [])


_CHAT_USAGE_KEYS = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens"}
MAX_TOKENS_COUNT = 2**53


def chat_usage(interface: str, usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """An agent's usage in chat's shape (prompt/completion/total tokens), or None. A count out of
    range is the model's fault (InvalidModelOutput), never a corrupted counter."""
    if not isinstance(usage, dict):
        return None
    result = {}
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        source = key if interface == CHAT_AGENT else _CHAT_USAGE_KEYS.get(key, key)
        value = usage.get(source)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 0 <= value < MAX_TOKENS_COUNT
        ):
            raise InvalidModelOutput(
                f"usage.{source}: expected a whole number from 0 to 2^53, got {value!r}"
            )
        result[key] = value
    return result


def answer_usage(interface: str, answer: dict[str, Any]) -> dict[str, Any] | None:
    return chat_usage(interface, answer.get("usage"))


def answer_events(interface: str, answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole answer as the stream items of its interface (for an agent without
    `predict_stream` asked to stream)."""
    if interface == CHAT_AGENT:
        messages = answer.get("messages") or []
        chunks: list[dict[str, Any]] = [{"delta": message} for message in messages]
        if chunks:
            for key in ("finish_reason", "usage", "custom_outputs"):
                if answer.get(key) is not None:
                    chunks[-1][key] = answer[key]
        return chunks
    events: list[dict[str, Any]] = [
        {"type": ITEM_DONE, "item": item} for item in answer.get("output") or []
    ]
    if answer.get("usage") is not None or answer.get("custom_outputs") is not None:
        response = {key: value for key, value in answer.items() if key != "custom_outputs"}
        completed: dict[str, Any] = {"type": COMPLETED, "response": response}
        if answer.get("custom_outputs") is not None:
            completed["custom_outputs"] = answer["custom_outputs"]
        events.append(completed)
    return events


class UsageTally:
    """The usage a stream reported, in chat's shape: a ResponsesAgent's from its
    `response.completed` event, a ChatAgent's chunks added up (as MLflow tells clients to)."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.usage: dict[str, Any] | None = None

    def add(self, item: dict[str, Any]) -> None:
        if self.interface == RESPONSES_AGENT:
            if item.get("type") == COMPLETED and isinstance(item.get("response"), dict):
                reported = chat_usage(RESPONSES_AGENT, item["response"].get("usage"))
                self.usage = reported or self.usage
            return
        reported = chat_usage(CHAT_AGENT, item.get("usage"))
        if reported is None:
            return
        if self.usage is None:
            self.usage = reported
        else:
            self.usage = {
                key: (self.usage.get(key) or 0) + (value or 0) for key, value in reported.items()
            }


class ChatAgentEvents:
    """A ChatAgent's chunks as ResponsesAgent stream events: an assistant message's content as
    text deltas (its item done when another message starts, or at the end), tool calls and tool
    results as done items, usage and custom outputs in a last `response.completed`."""

    def __init__(self) -> None:
        self.open_id: str | None = None
        self.text = ""
        self.usage = UsageTally(CHAT_AGENT)
        self.custom_outputs: Any = None

    def chunk(self, chunk: dict[str, Any]) -> Iterator[dict[str, Any]]:
        delta = chunk.get("delta") or {}
        self.usage.add(chunk)
        if chunk.get("custom_outputs") is not None:
            self.custom_outputs = chunk["custom_outputs"]
        message_id = delta.get("id")
        if message_id != self.open_id:
            yield from self._close()
        if delta.get("role") == "assistant" and delta.get("content"):
            self.open_id = message_id
            self.text += delta["content"]
            yield {"type": TEXT_DELTA, "item_id": message_id, "delta": delta["content"]}
        if delta.get("tool_calls") or delta.get("role") == "tool":
            yield from self._close()
            for item in chat_agent_items([{**delta, "content": delta.get("content")}]):
                if item["type"] != "message":
                    yield {"type": ITEM_DONE, "item": item}

    def _close(self) -> Iterator[dict[str, Any]]:
        if self.open_id is not None:
            yield {"type": ITEM_DONE, "item": text_item(self.text, self.open_id)}
        self.open_id, self.text = None, ""

    def finish(self) -> Iterator[dict[str, Any]]:
        yield from self._close()
        usage = self.usage.usage
        if usage is not None or self.custom_outputs is not None:
            response: dict[str, Any] = {"output": []}
            if usage is not None:
                response["usage"] = {
                    "input_tokens": usage.get("prompt_tokens") or 0,
                    "output_tokens": usage.get("completion_tokens") or 0,
                    "total_tokens": usage.get("total_tokens") or 0,
                }
            event: dict[str, Any] = {"type": COMPLETED, "response": response}
            if self.custom_outputs is not None:
                event["custom_outputs"] = self.custom_outputs
            yield event


def as_json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
