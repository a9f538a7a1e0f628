"""The Responses API's answer: a `chat.completion` written back as a `response` object, or its
chunks as the typed event stream (`response.created` … `response.completed`, each with its
`sequence_number`). `ResponsesDialect` is the dialect the chat pipeline answers `/v1/responses`
with; it reads the request through `ChatTranslation`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from chatmodels.exceptions import ChatModelsError
from chatmodels.serving import runtime
from chatmodels.serving.dialects.base import KEEP_ALIVE_EVENT, ParsedChat, sse
from chatmodels.serving.dialects.responses_request import ChatTranslation, read_state

# Chat finish reasons that leave a response incomplete, and why (Response.incomplete_details).
_INCOMPLETE: dict[str | None, str] = {
    "length": "max_output_tokens",
    "content_filter": "content_filter",
}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


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

    def __init__(
        self, body: dict[str, Any], *, model: str, context: list[dict[str, Any]] | None = None
    ) -> None:
        """`context`: the stored items the request continues (`previous_response_id`,
        `conversation`), as `chatmodels.responses_store` found them."""
        self.body = body
        self.model = model
        self.state = read_state(body)
        self.context = context or []
        self.id = _new_id("resp")
        self.created_at = int(time.time())
        self._stream: _ResponseStream | None = None
        # The last response object made that ended the request (completed, incomplete or
        # failed): what is stored once the answer is out.
        self.final: dict[str, Any] | None = None

    def parse(self, body: dict[str, Any]) -> ParsedChat:
        request = ChatTranslation(body, context=self.context).chat_request()
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
        text = body.get("text")
        if not isinstance(text, dict):
            text = {}
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
            "previous_response_id": self.state.previous_response_id,
            "reasoning": body.get("reasoning"),
            "store": self.state.store,
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
        if self.state.conversation_id is not None:
            response["conversation"] = {"id": self.state.conversation_id}
        if usage is not None:  # left out when the model reported none
            response["usage"] = usage
        if status != "in_progress":
            self.final = response
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

    def begin(self) -> Iterator[bytes]:
        self._stream = _ResponseStream(self)
        return self._stream.start()

    def event(self, chunk: dict[str, Any] | None) -> Iterator[bytes]:
        if chunk is runtime.KEEP_ALIVE:
            return iter((KEEP_ALIVE_EVENT,))
        assert self._stream is not None
        return self._stream.chunk(chunk)

    def end(self) -> Iterator[bytes]:
        assert self._stream is not None
        yield from self._stream.finish()

    def failed(self, error: ChatModelsError) -> Iterator[bytes]:
        stream = self._stream or _ResponseStream(self)
        yield from stream.fail(error)

    def cut(self, error: ChatModelsError) -> Iterator[bytes]:
        return self.failed(error)  # `response.failed` ends a Responses stream either way

    def cancelled(self) -> dict[str, Any]:
        """The response of a stream whose client went away: what was made until then."""
        output = self._stream.output if self._stream is not None else []
        for item in output:
            if item["status"] == "in_progress":
                item["status"] = "incomplete"
        return self.response(status="cancelled", output=output)


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
