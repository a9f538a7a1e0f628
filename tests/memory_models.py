"""A model that shows what conversation it was given, for the stored-state tests through the
real server (tests/api/test_stored_responses_clients.py)."""

from __future__ import annotations

import json

from chatmodels import ChatChunk, ChatModel, ChatResponse


class Memory(ChatModel):
    """Says every user message it was given, so a test sees what the server remembered:

    - the last message is a tool result: "tool said <result>; users: a, b";
    - tools are given and the last message is the user's: calls the first tool with
      `{"city": <that message>}`;
    - else: "users: a, b".

    Streams the same answer in two pieces.
    """

    def _answer(self, messages, params) -> tuple[str | None, dict | None]:
        users = ", ".join(m.content for m in messages if m.role == "user")
        last = messages[-1]
        if last.role == "tool":
            return f"tool said {last.content}; users: {users}", None
        if params.tools:
            arguments = json.dumps({"city": last.content})
            return None, {
                "id": f"call_{len(messages)}",
                "name": params.tools[0].function.name,
                "arguments": arguments,
            }
        return f"users: {users}", None

    def predict(self, context, messages, params):
        text, call = self._answer(messages, params)
        message = {"role": "assistant", "content": text}
        if call is not None:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ]
        return ChatResponse(choices=[{"message": message}])

    def predict_stream(self, context, messages, params):
        text, call = self._answer(messages, params)
        if call is not None:
            yield ChatChunk(
                choices=[
                    {
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": call["id"],
                                    "type": "function",
                                    "function": {
                                        "name": call["name"],
                                        "arguments": call["arguments"],
                                    },
                                }
                            ]
                        },
                        "finish_reason": "tool_calls",
                    }
                ]
            )
            return
        middle = len(text) // 2
        yield ChatChunk(choices=[{"delta": {"content": text[:middle]}}])
        yield ChatChunk(choices=[{"delta": {"content": text[middle:]}, "finish_reason": "stop"}])
