"""ResponsesAgent and ChatAgent models the tests register (as MLflow users write them)."""

from __future__ import annotations

import json
import uuid

from chatmodels import (
    ChatAgent,
    ChatAgentChunk,
    ChatAgentMessage,
    ChatAgentResponse,
    ResponsesAgent,
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)


def _last_user_text(request) -> str:
    for item in reversed(request.input):
        data = item.model_dump()
        if data.get("role") == "user":
            content = data["content"]
            if isinstance(content, str):
                return content
            return "".join(part.get("text", "") for part in content)
    return ""


class EchoAgent(ResponsesAgent):
    """Answers "echo: <the last user text>", word by word when streaming, with usage."""

    def predict(self, request):
        text = f"echo: {_last_user_text(request)}"
        return ResponsesAgentResponse(
            output=[self.create_text_output_item(text, "msg_echo")],
            usage={
                "input_tokens": 3,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 2,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 5,
            },
            custom_outputs={"seen": len(request.input)},
        )

    def predict_stream(self, request):
        words = f"echo: {_last_user_text(request)}".split(" ")
        for index, word in enumerate(words):
            yield ResponsesAgentStreamEvent(
                **self.create_text_delta(word if index == 0 else " " + word, "msg_echo")
            )
        yield ResponsesAgentStreamEvent(
            type="response.output_item.done",
            item=self.create_text_output_item(" ".join(words), "msg_echo"),
        )
        yield ResponsesAgentStreamEvent(
            type="response.completed",
            response={
                "output": [],
                "usage": {
                    "input_tokens": 3,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": len(words),
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 3 + len(words),
                },
            },
        )


class WeatherAgent(ResponsesAgent):
    """With a `get_weather` tool and no result yet, asks the client to call it (a function
    call left unanswered); with the result, answers with it. Streams items whole."""

    def _items(self, request):
        outputs = [i.model_dump() for i in request.input if i.type == "function_call_output"]
        if outputs:
            return [self.create_text_output_item(f"It is {outputs[-1]['output']}.", "msg_w")]
        return [
            self.create_function_call_item(
                "fc_1", "call_1", "get_weather", json.dumps({"city": _last_user_text(request)})
            )
        ]

    def predict(self, request):
        return ResponsesAgentResponse(output=self._items(request))

    def predict_stream(self, request):
        for item in self._items(request):
            yield ResponsesAgentStreamEvent(type="response.output_item.done", item=item)


class AsyncEchoAgent(ResponsesAgent):
    """EchoAgent's answers from async methods, and a reasoning item first."""

    async def predict(self, request):
        return ResponsesAgentResponse(
            output=[
                self.create_reasoning_item("rs_1", "thinking"),
                self.create_text_output_item(f"async: {_last_user_text(request)}", "msg_a"),
            ]
        )

    async def predict_stream(self, request):
        yield ResponsesAgentStreamEvent(
            type="response.output_item.done", item=self.create_reasoning_item("rs_1", "thinking")
        )
        for word in ("async:", " ", _last_user_text(request)):
            yield ResponsesAgentStreamEvent(**self.create_text_delta(word, "msg_a"))
        yield ResponsesAgentStreamEvent(
            type="response.output_item.done",
            item=self.create_text_output_item(f"async: {_last_user_text(request)}", "msg_a"),
        )


class BadOutputAgent(ResponsesAgent):
    """Answers an output item of a type MLflow refuses."""

    def predict(self, request):
        return {"output": [{"type": "not_an_item"}]}


class EchoChatAgent(ChatAgent):
    """A ChatAgent that runs a tool itself, then answers: its messages are the steps."""

    def _messages(self, messages):
        question = messages[-1].content
        call_id = "call_" + uuid.uuid4().hex[:8]
        return [
            ChatAgentMessage(
                role="assistant",
                id="m1",
                tool_calls=[
                    {"id": call_id, "function": {"name": "lookup", "arguments": "{}"}},
                ],
            ),
            ChatAgentMessage(
                role="tool", id="m2", name="lookup", tool_call_id=call_id, content="found"
            ),
            ChatAgentMessage(role="assistant", id="m3", content=f"chat agent: {question}"),
        ]

    def predict(self, messages, context=None, custom_inputs=None):
        return ChatAgentResponse(
            messages=self._messages(messages),
            usage={"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
            custom_outputs={"user": context.user_id if context else None},
        )

    def predict_stream(self, messages, context=None, custom_inputs=None):
        steps = self._messages(messages)
        yield ChatAgentChunk(delta=steps[0])
        yield ChatAgentChunk(delta=steps[1])
        for word in steps[2].content.split(" "):
            yield ChatAgentChunk(delta={"role": "assistant", "id": "m3", "content": word + " "})
        yield ChatAgentChunk(
            delta={"role": "assistant", "id": "m3", "content": ""},
            finish_reason="stop",
            usage={"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
        )


class PlainAgent(ResponsesAgent):
    """No predict_stream: a stream is its one answer."""

    def predict(self, request):
        return {
            "output": [
                self.create_function_call_item("fc_p", "call_p", "lookup", "{}"),
                self.create_function_call_output_item("call_p", "42"),
                self.create_text_output_item("It is 42.", "msg_p"),
            ],
            "custom_outputs": {"plain": True},
        }


class BadEventAgent(ResponsesAgent):
    """Streams one good delta, then an output item MLflow refuses."""

    def predict(self, request):
        return ResponsesAgentResponse(output=[self.create_text_output_item("ok", "msg_1")])

    def predict_stream(self, request):
        yield ResponsesAgentStreamEvent(**self.create_text_delta("ok", "msg_1"))
        yield {"type": "response.output_item.done", "item": {"type": "message", "id": "m"}}


class CountingAgent(ResponsesAgent):
    """Says how many input items it was given, and the text of the first."""

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        first = request.input[0].model_dump()
        content = first.get("content")
        text = content if isinstance(content, str) else content[0].get("text")
        item = self.create_text_output_item(f"{len(request.input)} items, first: {text}", "msg_n")
        return ResponsesAgentResponse(output=[item])
