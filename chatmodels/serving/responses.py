"""The OpenAI Responses API (`POST /v1/responses`), stateless, as a dialect of the chat pipeline.

A Responses request is translated into a chat-completions body (`instructions` and `input` items
become messages; `tools`, `tool_choice`, `text.format`, `max_output_tokens`… become params) and
answered by the one chat pipeline (`api/chat.py`); the `chat.completion`, or its chunks, is
written back as a `response` object, or as the typed event stream with `sequence_number`s.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

from chatmodels.exceptions import ChatDataError, ChatModelsError, InvalidRequest
from chatmodels.serving import runtime
from chatmodels.serving.pipeline import KEEP_ALIVE_EVENT, ParsedChat, sse
from chatmodels.signature import REQUEST_SCHEMA as CHAT_SCHEMA
from chatmodels.types import ChatRequest

# Request keys that are read here (translated), or that only make sense to a server that stores
# responses; every other key goes to the chat request as it is (temperature, top_p, user,
# metadata, parallel_tool_calls, custom_inputs, vendor keys…).
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
        # Stateless: accepted (with the checks in _refuse_state) and not passed on.
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
# Chat finish reasons that leave a response incomplete, and why (Response.incomplete_details).
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:57] + '...' if len(text) > 60 else text}"


def _expected(param: str, what: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"{param}: expected {what}, got {_describe(value)}", param=param)


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

    def __init__(self, body: dict[str, Any]) -> None:
        _refuse_state(body)
        self.messages: list[dict[str, Any]] = []
        self.sources: list[str] = []  # messages[i] came from sources[i] (e.g. "input[2]")
        self._read_instructions(body.get("instructions"))
        self._read_input(body.get("input"))
        chat = {key: value for key, value in body.items() if key not in _TRANSLATED}
        chat["messages"] = self.messages
        if body.get("max_output_tokens") is not None:
            chat["max_tokens"] = body["max_output_tokens"]
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
            if error.param and param != error.param and message.startswith(error.param):
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
                f"{path}: item references are not supported: this server keeps no items; "
                "send the item itself",
                param=path,
            )
        else:
            raise InvalidRequest(
                f"{path}.type: {kind!r} is not supported; expected 'message', 'function_call' "
                "or 'function_call_output'",
                param=f"{path}.type",
            )


def _refuse_state(body: dict[str, Any]) -> None:
    """What needs stored responses is refused by name: this server keeps none."""
    for key in ("previous_response_id", "conversation", "prompt"):
        if body.get(key) is not None:
            raise InvalidRequest(
                f"{key}: is not supported: this server is stateless and keeps no responses, "
                "conversations or prompts; send the whole conversation in `input`",
                param=key,
            )
    if not isinstance(body.get("store"), (bool, type(None))):
        raise _expected("store", "a boolean (nothing is stored either way)", body["store"])
    if body.get("background"):
        raise InvalidRequest(
            "background: is not supported: this server keeps no responses to poll",
            param="background",
        )


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


# ---------------------------------------------------------------------------------------------
# The answer: chat → Responses


def _output_text(text: str, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "output_text",
        "text": text,
        "annotations": [],
        "logprobs": _logprobs(logprobs),
    }


def _logprobs(logprobs: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Chat's token log probabilities in the Responses shape (`bytes` a list, never null)."""
    tokens = (logprobs or {}).get("content") or []
    return [
        {
            "token": token["token"],
            "logprob": token["logprob"],
            "bytes": token.get("bytes") or [],
            "top_logprobs": [
                {"token": top["token"], "logprob": top["logprob"], "bytes": top.get("bytes") or []}
                for top in token.get("top_logprobs") or ()
            ],
        }
        for token in tokens
    ]


def response_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Responses' `usage` from chat's, or None when the model reported none. A ChatModel reports
    no breakdown: cached and reasoning tokens are 0 (this server caches no prompts)."""
    if usage is None:
        return None
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage["total_tokens"],
    }


def _echoed_tool(tool: Any) -> Any:
    # The Response repeats the request's tools; a function tool always has strict and parameters.
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"strict": None, "parameters": None, **tool}
    return tool


class ResponsesDialect:
    """One `/v1/responses` request: its translation, and the response object it answers with."""

    def __init__(self, body: dict[str, Any], *, model: str) -> None:
        self.body = body
        self.model = model
        self.id = _new_id("resp")
        self.created_at = int(time.time())
        self._stream: _ResponseStream | None = None

    def parse(self, body: dict[str, Any]) -> ParsedChat:
        request = ChatTranslation(body).chat_request()
        # A streamed response ends with response.completed carrying usage: always ask for it.
        return ParsedChat(request, include_usage=True)

    def response(
        self,
        *,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        incomplete_reason: str | None = None,
    ) -> dict[str, Any]:
        """A `response` object: what was asked (the spec repeats the request's settings) and
        what the model answered."""
        body = self.body
        text = body.get("text") if isinstance(body.get("text"), dict) else {}
        response = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error,
            "incomplete_details": (
                {"reason": incomplete_reason} if incomplete_reason is not None else None
            ),
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
            "previous_response_id": None,
            "reasoning": body.get("reasoning"),
            "store": False,  # nothing is kept, whatever was asked
            "temperature": body.get("temperature", 1.0),
            "text": {**text, "format": text.get("format") or {"type": "text"}},
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": [_echoed_tool(tool) for tool in body.get("tools") or ()],
            "top_p": body.get("top_p"),
            "truncation": "disabled",
            "metadata": body.get("metadata") or {},
        }
        if isinstance(body.get("user"), str):
            response["user"] = body["user"]
        if usage is not None:  # left out when the model reported none
            response["usage"] = usage
        return response

    # -- a whole answer

    def completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        choices = completion.get("choices") or [{"message": {}, "finish_reason": "stop"}]
        choice = choices[0]  # Responses has no `n`: one answer
        message = choice["message"]
        content, refusal = message.get("content"), message.get("refusal")
        tool_calls = message.get("tool_calls") or []
        output = []
        parts = []
        if content or (not refusal and not tool_calls):
            parts.append(_output_text(content or "", choice.get("logprobs")))
        if refusal:
            parts.append({"type": "refusal", "refusal": refusal})
        if parts:
            output.append(_message_item(_new_id("msg"), parts, "completed"))
        for call in tool_calls:
            function = call["function"]
            output.append(
                _function_call_item(
                    call["id"], function["name"], function["arguments"], "completed"
                )
            )
        reason = _INCOMPLETE.get(choice.get("finish_reason"))
        return self.response(
            status="completed" if reason is None else "incomplete",
            output=output,
            usage=response_usage(completion.get("usage")),
            incomplete_reason=reason,
        )

    # -- a stream

    def events(self, chunks: Iterator[dict[str, Any] | None]) -> Iterator[bytes]:
        self._stream = stream = _ResponseStream(self)
        yield from stream.start()
        for chunk in chunks:
            if chunk is runtime.KEEP_ALIVE:
                yield KEEP_ALIVE_EVENT
            else:
                yield from stream.chunk(chunk)

    def end(self) -> Iterator[bytes]:
        assert self._stream is not None
        yield from self._stream.finish()

    def failed(self, error: ChatModelsError) -> Iterator[bytes]:
        stream = self._stream or _ResponseStream(self)
        yield from stream.fail(error)


def _message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _function_call_item(
    call_id: str, name: str, arguments: str, status: str, item_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": item_id or _new_id("fc"),
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


class _ResponseStream:
    """Chat chunks → typed Responses events. Output items are built as the deltas come: a message
    item (text and refusal parts) and one function_call item per tool call; a message item is
    done when a tool call starts after it, the rest when the stream ends."""

    def __init__(self, dialect: ResponsesDialect) -> None:
        self.dialect = dialect
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.message: dict[str, Any] | None = None  # the open message item
        self.parts: dict[str, int] = {}  # content part type ("output_text", "refusal") → index
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool-call index → its open item
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def event(self, kind: str, **fields: Any) -> bytes:
        # Written out at once, so an event carries each item as it is at this moment.
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(data, event=kind)

    def start(self) -> Iterator[bytes]:
        snapshot = self.dialect.response(status="in_progress", output=[])
        yield self.event("response.created", response=snapshot)
        yield self.event("response.in_progress", response=snapshot)

    def chunk(self, chunk: dict[str, Any]) -> Iterator[bytes]:
        if not chunk["choices"]:
            self.usage = chunk.get("usage")  # the last chunk: usage, or null
            return
        choice = chunk["choices"][0]  # Responses has no `n`: the first answer
        delta = choice.get("delta") or {}
        if delta.get("content"):
            logprobs = _logprobs(choice.get("logprobs"))
            yield from self._text("output_text", delta["content"], logprobs)
        if delta.get("refusal"):
            yield from self._text("refusal", delta["refusal"], None)
        for call in delta.get("tool_calls") or ():
            yield from self._tool_call(call)
        self.finish_reason = choice.get("finish_reason") or self.finish_reason

    def _text(self, part_type: str, text: str, logprobs: list | None) -> Iterator[bytes]:
        if self.message is None:
            self.message = _message_item(_new_id("msg"), [], "in_progress")
            self.parts = {}
            self.output.append(self.message)
            yield self._item_event("response.output_item.added", self.message)
        item = self.message
        where = {"item_id": item["id"], "output_index": self.output.index(item)}
        if part_type not in self.parts:
            part = (
                _output_text("")
                if part_type == "output_text"
                else {"type": "refusal", "refusal": ""}
            )
            self.parts[part_type] = len(item["content"])
            item["content"].append(part)
            yield self.event(
                "response.content_part.added",
                **where,
                content_index=self.parts[part_type],
                part=part,
            )
        index = self.parts[part_type]
        part = item["content"][index]
        if part_type == "output_text":
            part["text"] += text
            part["logprobs"] += logprobs or []
            yield self.event(
                "response.output_text.delta",
                **where,
                content_index=index,
                delta=text,
                logprobs=logprobs or [],
            )
        else:
            part["refusal"] += text
            yield self.event("response.refusal.delta", **where, content_index=index, delta=text)

    def _tool_call(self, call: dict[str, Any]) -> Iterator[bytes]:
        function = call.get("function") or {}
        item = self.calls.get(call["index"])
        if item is None:
            yield from self._close_message()
            item = _function_call_item(
                call.get("id") or _new_id("call"), function.get("name") or "", "", "in_progress"
            )
            self.calls[call["index"]] = item
            self.output.append(item)
            yield self._item_event("response.output_item.added", item)
        elif function.get("name"):
            item["name"] += function["name"]
        if function.get("arguments"):
            item["arguments"] += function["arguments"]
            yield self.event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=self.output.index(item),
                delta=function["arguments"],
            )

    def _item_event(self, kind: str, item: dict[str, Any]) -> bytes:
        return self.event(kind, output_index=self.output.index(item), item=item)

    def _close_message(self) -> Iterator[bytes]:
        item = self.message
        if item is None:
            return
        self.message = None
        where = {"item_id": item["id"], "output_index": self.output.index(item)}
        for index, part in enumerate(item["content"]):
            if part["type"] == "output_text":
                yield self.event(
                    "response.output_text.done",
                    **where,
                    content_index=index,
                    text=part["text"],
                    logprobs=part["logprobs"],
                )
            else:
                yield self.event(
                    "response.refusal.done", **where, content_index=index, refusal=part["refusal"]
                )
            yield self.event("response.content_part.done", **where, content_index=index, part=part)
        item["status"] = "completed"
        yield self._item_event("response.output_item.done", item)

    def _close_calls(self) -> Iterator[bytes]:
        for item in self.calls.values():
            yield self.event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=self.output.index(item),
                name=item["name"],
                arguments=item["arguments"],
            )
            item["status"] = "completed"
            yield self._item_event("response.output_item.done", item)
        self.calls = {}

    def finish(self) -> Iterator[bytes]:
        yield from self._close_message()
        yield from self._close_calls()
        reason = _INCOMPLETE.get(self.finish_reason)
        response = self.dialect.response(
            status="completed" if reason is None else "incomplete",
            output=self.output,
            usage=response_usage(self.usage),
            incomplete_reason=reason,
        )
        kind = "response.completed" if reason is None else "response.incomplete"
        yield self.event(kind, response=response)

    def fail(self, error: ChatModelsError) -> Iterator[bytes]:
        """The spec's `error` event, then `response.failed` with what was made so far."""
        message = error.message
        yield self.event("error", code=error.code, message=message, param=error.param)
        for item in self.output:
            if item["status"] == "in_progress":
                item["status"] = "incomplete"
        failure = {"code": "server_error", "message": message}
        response = self.dialect.response(status="failed", output=self.output, error=failure)
        yield self.event("response.failed", response=response)


# ---------------------------------------------------------------------------------------------
# The OpenAPI description of the route (what `ChatTranslation` accepts; see docs/api.md)

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
_CHAT_FUNCTION = CHAT_SCHEMA["properties"]["tools"]["items"]["anyOf"][0]["properties"]["function"]
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
REQUEST_SCHEMA: dict[str, Any] = {
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
        "max_output_tokens": {"type": ["integer", "null"], "minimum": 1},
        "temperature": {"type": ["number", "null"], "minimum": 0},
        "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "stream": {"type": ["boolean", "null"]},
        "user": CHAT_SCHEMA["properties"]["user"],
        "metadata": CHAT_SCHEMA["properties"]["metadata"],
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
RESPONSE_SCHEMA: dict[str, Any] = {
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
