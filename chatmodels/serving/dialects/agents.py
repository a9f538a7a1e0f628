"""How a ResponsesAgent or a ChatAgent speaks each route: the dialect the pipeline answers with
once it knows the version's interface (`for_interface`).

- `/api/models/<name>/invocations`: the agent's own request and answer (`OwnFormatDialect`), as
  `mlflow models serve` takes and gives them; a stream is `data: <event or chunk>` events, then
  `data: [DONE]`.
- `/v1/responses`: `AgentResponsesDialect`, the agent's output items as the `response` object,
  its stream events as the spec's typed event stream (text deltas opened and closed as OpenAI's
  are, each finished item with its `output_item.added` / `.done`).
- `/v1/chat/completions` and the playground: `AgentChatDialect`, the chat messages as the agent's
  input; its text as the answer's content, and the function calls it left unanswered (no
  `function_call_output` after them) as `tool_calls`.

Agents' output is read as Responses output items and stream events (`agents.translate`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from chatmodels.agents import translate
from chatmodels.agents.translate import COMPLETED, ITEM_DONE, TEXT_DELTA, new_id
from chatmodels.exceptions import ChatModelsError
from chatmodels.interfaces import AGENTS, CHAT_AGENT, CHAT_MODEL, AgentInterface, AgentRequest
from chatmodels.serving import runtime
from chatmodels.serving.dialects.base import KEEP_ALIVE_EVENT, ChatDialect, ParsedChat, sse
from chatmodels.serving.dialects.chat_completions import (
    CHAT_COMPLETIONS,
    INVOCATIONS,
    ChatCompletionsDialect,
)
from chatmodels.serving.dialects.responses_answer import ResponsesDialect, response_usage
from chatmodels.serving.dialects.responses_request import ChatTranslation
from chatmodels.serving.openai_shapes import chunk_dict, completion_dict, completion_id, usage_of


def for_interface(interface: str, dialect: ChatDialect, *, model: str) -> ChatDialect:
    """The dialect that answers `dialect`'s route for a model of `interface` (`model`: the name
    its answers carry)."""
    if interface == CHAT_MODEL:
        return dialect
    agent = AGENTS[interface]
    if dialect is INVOCATIONS:
        return OwnFormatDialect(agent)
    if isinstance(dialect, ResponsesDialect):
        return AgentResponsesDialect(agent, dialect)
    return AgentChatDialect(agent, model=model)


# ---------------------------------------------------------------------------------------------
# /invocations: the agent's own format


class OwnFormatDialect(ChatCompletionsDialect):
    """The agent's request as it is, its answer and stream items as they are."""

    def __init__(self, agent: AgentInterface) -> None:
        self.agent = agent

    def parse(self, body: dict[str, Any]) -> ParsedChat:
        request = self.agent.request(body)
        return ParsedChat(AgentRequest(body, stream=bool(getattr(request, "stream", False))), False)

    def completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        return completion


# ---------------------------------------------------------------------------------------------
# /v1/chat/completions


def _chat_params_for_responses(chat: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in ("temperature", "top_p", "parallel_tool_calls", "user", "metadata"):
        if chat.get(key) is not None:
            params[key] = chat[key]
    if chat.get("max_tokens") is not None:
        params["max_output_tokens"] = chat["max_tokens"]
    if chat.get("tools"):
        params["tools"] = translate.chat_tools_to_responses(chat["tools"])
    if chat.get("tool_choice") is not None:
        params["tool_choice"] = translate.chat_tool_choice_to_responses(chat["tool_choice"])
    return params


class AgentChatDialect(ChatCompletionsDialect):
    """An agent answering the chat-completions format."""

    def __init__(self, agent: AgentInterface, *, model: str) -> None:
        self.agent = agent
        self.model = model
        self._chunks: _ChatChunks | None = None
        self._chat_agent_events = translate.ChatAgentEvents()

    def parse(self, body: dict[str, Any]) -> ParsedChat:
        parsed = CHAT_COMPLETIONS.parse(body)  # a chat request: 400s name the chat fields
        assert not isinstance(parsed.request, AgentRequest)
        chat = parsed.request.to_dict()
        stream = bool(parsed.request.stream)
        data: dict[str, Any]
        if self.agent.name == CHAT_AGENT:
            data = {"messages": translate.chat_messages_to_agent_messages(chat["messages"])}
        else:
            data = {
                "input": translate.chat_messages_to_items(chat["messages"]),
                **_chat_params_for_responses({**chat.get("extra", {}), **chat}),
                "stream": stream,
            }
        for key in ("custom_inputs", "context"):
            value = chat.get(key, chat.get("extra", {}).get(key))
            if value is not None:
                data[key] = value
        if self.agent.name == CHAT_AGENT:
            data["stream"] = stream
        self.agent.request(data)
        self._chunks = _ChatChunks(self.model, include_usage=parsed.include_usage)
        return ParsedChat(AgentRequest(data, stream=stream), parsed.include_usage)

    def completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        items = translate.answer_items(self.agent.name, completion)
        text, refusal, calls = _chat_answer(items)
        finish_reason = "tool_calls" if calls else (completion.get("finish_reason") or "stop")
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if (text or not calls) else None,
        }
        if refusal:
            message["refusal"] = refusal
        if calls:
            message["tool_calls"] = calls
        data: dict[str, Any] = {
            "created": int(time.time()),
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": usage_of(translate.answer_usage(self.agent.name, completion)),
        }
        if completion.get("custom_outputs") is not None:
            data["custom_outputs"] = completion["custom_outputs"]
        return completion_dict(data, served_name=self.model)

    def event(self, chunk: dict[str, Any] | None) -> Iterator[bytes]:
        if chunk is runtime.KEEP_ALIVE:
            yield KEEP_ALIVE_EVENT
            return
        assert self._chunks is not None
        for event in self._events(chunk):
            for data in self._chunks.event(event):
                yield sse(data)

    def _events(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if self.agent.name == CHAT_AGENT:
            yield from self._chat_agent_events.chunk(item)
        else:
            yield item

    def end(self) -> Iterator[bytes]:
        assert self._chunks is not None
        for event in self._chat_agent_events.finish():
            for data in self._chunks.event(event):
                yield sse(data)
        for data in self._chunks.finish():
            yield sse(data)
        yield from super().end()


def _chat_answer(items: list[dict[str, Any]]) -> tuple[str, str, list[dict[str, Any]]]:
    """Output items as chat's content, refusal and the tool calls left to the client."""
    text, refusal = [], []
    answered = {i.get("call_id") for i in items if i.get("type") == "function_call_output"}
    calls = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    text.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusal.append(part.get("refusal") or "")
        elif kind == "function_call" and item.get("call_id") not in answered:
            calls.append(
                {
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": item.get("arguments") or ""},
                }
            )
    return "".join(text), "".join(refusal), calls


class _ChatChunks:
    """ResponsesAgent stream events as `chat.completion.chunk` dicts: text deltas as content
    deltas (a message item that came whole, as one), the function calls left unanswered as
    tool-call deltas at the end, then the finish chunk and, when asked, the usage chunk."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id, self.created = completion_id(), int(time.time())
        self.role_sent = False
        self.streamed: set[str] = set()  # message items whose text came as deltas
        self.calls: dict[str, dict[str, Any]] = {}  # call_id → function_call item, unanswered
        self.usage: dict[str, Any] | None = None
        self.custom_outputs: Any = None

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        if not self.role_sent:
            delta = {"role": "assistant", **delta}
            self.role_sent = True
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return chunk_dict(
            {"choices": [choice]}, stream_id=self.id, created=self.created, model=self.model
        )

    def event(self, event: dict[str, Any]) -> Iterator[dict[str, Any]]:
        kind = event.get("type")
        if event.get("custom_outputs") is not None:
            self.custom_outputs = event["custom_outputs"]
        if kind == TEXT_DELTA:
            self.streamed.add(event.get("item_id") or "")
            if event.get("delta"):
                yield self._chunk({"content": event["delta"]})
        elif kind == ITEM_DONE:
            item = event.get("item") or {}
            item_kind = item.get("type")
            if item_kind == "message" and item.get("id") not in self.streamed:
                text, refusal, _ = _chat_answer([item])
                if text:
                    yield self._chunk({"content": text})
                if refusal:
                    yield self._chunk({"refusal": refusal})
            elif item_kind == "function_call":
                self.calls[item["call_id"]] = item
            elif item_kind == "function_call_output":
                self.calls.pop(item.get("call_id") or "", None)
        elif kind == COMPLETED and isinstance(event.get("response"), dict):
            reported = translate.chat_usage("responses_agent", event["response"].get("usage"))
            self.usage = usage_of(reported) or self.usage

    def finish(self) -> Iterator[dict[str, Any]]:
        calls = list(self.calls.values())
        if calls:
            yield self._chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": item["call_id"],
                            "type": "function",
                            "function": {
                                "name": item["name"],
                                "arguments": item.get("arguments") or "",
                            },
                        }
                        for index, item in enumerate(calls)
                    ]
                }
            )
        final = self._chunk({}, "tool_calls" if calls else "stop")
        if self.custom_outputs is not None:
            final["custom_outputs"] = self.custom_outputs
        yield final
        if self.include_usage:
            yield chunk_dict(
                {"choices": [], "usage": self.usage},
                stream_id=self.id,
                created=self.created,
                model=self.model,
            )


# ---------------------------------------------------------------------------------------------
# /v1/responses


# The ResponsesAgentRequest fields a Responses request passes on as they are.
_RESPONSES_KEYS = (
    "tools",
    "tool_choice",
    "truncation",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "reasoning",
    "store",
    "stream",
    "temperature",
    "text",
    "top_p",
    "user",
    "background",
    "custom_inputs",
    "context",
)


def _agent_tools(tools: Any) -> Any:
    # A function tool without parameters is valid to OpenAI; MLflow's FunctionTool wants a dict.
    if not isinstance(tools, list):
        return tools
    return [
        {**tool, "parameters": tool.get("parameters") or {}}
        if isinstance(tool, dict) and tool.get("type") == "function"
        else tool
        for tool in tools
    ]


class AgentResponsesDialect:
    """An agent answering the Responses API: its output items are the response's."""

    def __init__(self, agent: AgentInterface, responses: ResponsesDialect) -> None:
        self.agent = agent
        self.responses = responses
        self._stream: _AgentResponseStream | None = None
        self._chat_agent_events = translate.ChatAgentEvents()

    def parse(self, body: dict[str, Any]) -> ParsedChat:
        # The stored items a request continues (previous_response_id, conversation) come
        # before its input, as for a chat model.
        context = list(self.responses.context)
        translation = ChatTranslation(body, context=context)  # errors name the request's fields
        stream = bool(body.get("stream"))
        data: dict[str, Any]
        if self.agent.name == CHAT_AGENT:
            messages = translation.chat_request().to_dict()["messages"]
            data = {"messages": translate.chat_messages_to_agent_messages(messages)}
            for key in ("custom_inputs", "context"):
                if body.get(key) is not None:
                    data[key] = body[key]
            data["stream"] = stream
        else:
            items = body.get("input")
            if isinstance(items, str):
                items = [{"role": "user", "content": items}]
            items = [*context, *(items or [])]
            if isinstance(body.get("instructions"), str):
                items = [{"role": "system", "content": body["instructions"]}, *(items or [])]
            data = {key: body[key] for key in _RESPONSES_KEYS if body.get(key) is not None}
            data["input"] = items or []
            if "tools" in data:
                data["tools"] = _agent_tools(data["tools"])
        self.agent.request(data)
        return ParsedChat(AgentRequest(data, stream=stream), include_usage=True)

    def _response(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None,
        custom_outputs: Any,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        response = self.responses.response(
            status=status, output=output, usage=response_usage(usage), error=error
        )
        if custom_outputs is not None:
            response["custom_outputs"] = custom_outputs
        return response

    def completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        items = [spec_item(item) for item in translate.answer_items(self.agent.name, completion)]
        usage = usage_of(translate.answer_usage(self.agent.name, completion))
        return self._response("completed", items, usage, completion.get("custom_outputs"))

    def begin(self) -> Iterator[bytes]:
        self._stream = _AgentResponseStream(self)
        return self._stream.start()

    def event(self, chunk: dict[str, Any] | None) -> Iterator[bytes]:
        if chunk is runtime.KEEP_ALIVE:
            yield KEEP_ALIVE_EVENT
            return
        assert self._stream is not None
        events = self._chat_agent_events.chunk(chunk) if self.agent.name == CHAT_AGENT else [chunk]
        for event in events:
            yield from self._stream.agent_event(event)

    def end(self) -> Iterator[bytes]:
        assert self._stream is not None
        for event in self._chat_agent_events.finish():
            yield from self._stream.agent_event(event)
        yield from self._stream.finish()

    def failed(self, error: ChatModelsError) -> Iterator[bytes]:
        stream = self._stream or _AgentResponseStream(self)
        yield from stream.fail(error)

    def cut(self, error: ChatModelsError) -> Iterator[bytes]:
        return self.failed(error)  # `response.failed` ends a Responses stream either way


def _spec_part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "output_text":
        return {
            **part,
            "annotations": part.get("annotations") or [],
            "logprobs": part.get("logprobs") or [],
        }
    return dict(part)


def spec_item(item: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """An agent's output item with what OpenAI's spec requires of it filled in (ids, statuses,
    a text part's annotations and logprobs)."""
    item = dict(item)
    kind = item.get("type")
    if kind == "message":
        item.setdefault("id", new_id("msg"))
        item["role"] = "assistant"
        item["content"] = [_spec_part(part) for part in item.get("content") or ()]
    elif kind == "function_call":
        item["id"] = item.get("id") or new_id("fc")
    elif kind == "function_call_output":
        item["id"] = item.get("id") or new_id("fco")
        if not isinstance(item.get("output"), (str, list)):
            item["output"] = translate.as_json_text(item.get("output"))
    if kind in ("message", "function_call", "function_call_output"):
        item["status"] = item.get("status") or status
    return item


# Event types this stream writes itself, from the agent's items and deltas: the agent's own are
# not passed on (they would repeat or contradict these).
_WRITTEN_HERE = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.completed",
        "response.failed",
        "response.incomplete",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_text.annotation.added",
        "error",
    }
)


class _AgentResponseStream:
    """ResponsesAgent stream events → the spec's typed events, each with its sequence number:
    a text delta opens its message item (`output_item.added`, `content_part.added`) the first
    time its item id is seen; the item's `output_item.done` closes it (`output_text.done`,
    `content_part.done`, `output_item.done`); an item that comes whole is added and done at
    once, its text or arguments as one delta. The end is `response.completed` with every item,
    the usage and custom outputs the agent reported."""

    def __init__(self, dialect: AgentResponsesDialect) -> None:
        self.dialect = dialect
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, dict[str, Any]] = {}  # item id → its message item, open
        self.usage: dict[str, Any] | None = None
        self.custom_outputs: Any = None

    def emit(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(data, event=kind)

    def start(self) -> Iterator[bytes]:
        snapshot = self.dialect._response("in_progress", [], None, None)
        yield self.emit("response.created", response=snapshot)
        yield self.emit("response.in_progress", response=snapshot)

    def agent_event(self, event: dict[str, Any]) -> Iterator[bytes]:
        kind = event.get("type")
        if event.get("custom_outputs") is not None:
            self.custom_outputs = event["custom_outputs"]
        if kind == TEXT_DELTA:
            yield from self._text(event.get("item_id") or "", event.get("delta") or "")
        elif kind == ITEM_DONE:
            yield from self._item_done(event.get("item") or {})
        elif kind == "response.output_text.annotation.added":
            item = self.open.get(event.get("item_id") or "")
            if item is not None:
                yield self.emit(
                    kind,
                    item_id=item["id"],
                    output_index=self.output.index(item),
                    content_index=0,
                    annotation_index=event.get("annotation_index") or 0,
                    annotation=event.get("annotation"),
                )
        elif kind == COMPLETED:
            response = event.get("response")
            if isinstance(response, dict):
                reported = translate.chat_usage("responses_agent", response.get("usage"))
                self.usage = usage_of(reported) or self.usage
        elif kind == "error":
            yield self.emit(
                "error",
                code=event.get("code"),
                message=event.get("message"),
                param=event.get("param"),
            )
        elif kind not in _WRITTEN_HERE:
            fields = {k: v for k, v in event.items() if k not in ("type", "custom_outputs")}
            yield self.emit(str(kind), **fields)

    def _where(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item["id"], "output_index": self.output.index(item)}

    def _open_message(self, item_id: str) -> Iterator[bytes]:
        item = spec_item({"type": "message", "id": item_id, "content": []}, status="in_progress")
        self.open[item_id] = item
        self.output.append(item)
        yield self.emit("response.output_item.added", output_index=len(self.output) - 1, item=item)
        part = _spec_part({"type": "output_text", "text": ""})
        item["content"].append(part)
        yield self.emit(
            "response.content_part.added", **self._where(item), content_index=0, part=part
        )

    def _text(self, item_id: str, delta: str) -> Iterator[bytes]:
        if item_id not in self.open:
            yield from self._open_message(item_id)
        item = self.open[item_id]
        item["content"][0]["text"] += delta
        yield self.emit(
            "response.output_text.delta",
            **self._where(item),
            content_index=0,
            delta=delta,
            logprobs=[],
        )

    def _close_message(self, item: dict[str, Any], done: dict[str, Any] | None) -> Iterator[bytes]:
        """Close an open message item: with the done item's content, or its own text."""
        where = self._where(item)
        self.open.pop(item["id"], None)
        if done is not None:
            item["content"] = done["content"] or item["content"]
        for index, part in enumerate(item["content"]):
            if part.get("type") == "output_text":
                yield self.emit(
                    "response.output_text.done",
                    **where,
                    content_index=index,
                    text=part["text"],
                    logprobs=part["logprobs"],
                )
            yield self.emit("response.content_part.done", **where, content_index=index, part=part)
        item["status"] = "completed"
        yield self.emit("response.output_item.done", output_index=where["output_index"], item=item)

    def _item_done(self, raw: dict[str, Any]) -> Iterator[bytes]:
        item = spec_item(raw)
        if item.get("type") == "message":
            opened = self.open.get(item["id"])
            if opened is None and len(self.open) == 1:
                # Streamed under another id (MLflow's chat-completions stream uses the chunk's
                # id for both): the open message is this one if its text is this one's.
                (candidate,) = self.open.values()
                if _texts(candidate) == _texts(item):
                    opened = candidate
            if opened is not None:
                yield from self._close_message(opened, item)
                return
            yield from self._whole_message(item)
            return
        index = len(self.output)
        self.output.append(item)
        if item.get("type") == "function_call":
            added = {**item, "arguments": "", "status": "in_progress"}
            yield self.emit("response.output_item.added", output_index=index, item=added)
            if item.get("arguments"):
                yield self.emit(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=item["arguments"],
                )
            yield self.emit(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item.get("name"),
                arguments=item.get("arguments") or "",
            )
        else:
            yield self.emit("response.output_item.added", output_index=index, item=item)
        yield self.emit("response.output_item.done", output_index=index, item=item)

    def _whole_message(self, item: dict[str, Any]) -> Iterator[bytes]:
        """A message item that came whole: added, each part with its text as one delta, done."""
        parts = item["content"]
        opened = {**item, "content": [], "status": "in_progress"}
        self.output.append(opened)
        index = len(self.output) - 1
        yield self.emit("response.output_item.added", output_index=index, item=opened)
        where = {"item_id": item["id"], "output_index": index}
        for content_index, part in enumerate(parts):
            empty = {**part, "text": ""} if part.get("type") == "output_text" else part
            yield self.emit(
                "response.content_part.added", **where, content_index=content_index, part=empty
            )
            if part.get("type") == "output_text" and part.get("text"):
                yield self.emit(
                    "response.output_text.delta",
                    **where,
                    content_index=content_index,
                    delta=part["text"],
                    logprobs=[],
                )
        self.open[item["id"]] = opened
        yield from self._close_message(opened, item)

    def finish(self) -> Iterator[bytes]:
        for item in list(self.open.values()):
            yield from self._close_message(item, None)
        response = self.dialect._response("completed", self.output, self.usage, self.custom_outputs)
        yield self.emit("response.completed", response=response)

    def fail(self, error: ChatModelsError) -> Iterator[bytes]:
        """The spec's `error` event, then `response.failed` with what was made so far."""
        yield self.emit("error", code=error.code, message=error.message, param=error.param)
        for item in self.output:
            if item.get("status") == "in_progress":
                item["status"] = "incomplete"
        failure = {"code": "server_error", "message": error.message}
        response = self.dialect._response(
            "failed", self.output, None, self.custom_outputs, error=failure
        )
        yield self.emit("response.failed", response=response)


def _texts(item: dict[str, Any]) -> str:
    return "".join(p.get("text") or "" for p in item.get("content") or () if isinstance(p, dict))
