"""A model that reports whatever usage it is told to (registered by path, so real servers load
it too): the last message is JSON, `{"prompt_tokens": ..., "completion_tokens": ...}`, and the
model answers "ok" with exactly that usage, in `predict` and on the last chunk of
`predict_stream`. Anything else: one token each way.
"""

from __future__ import annotations

import json

from chatmodels import ChatChunk, ChatModel, ChatResponse, TokenUsageStats


def _usage(messages) -> TokenUsageStats:
    content = messages[-1].content if messages else ""
    try:
        told = json.loads(content)
    except (TypeError, ValueError):
        told = None
    usage = TokenUsageStats(prompt_tokens=1, completion_tokens=1)
    if isinstance(told, dict):
        # Set after construction: a model can put anything there.
        usage.prompt_tokens = told.get("prompt_tokens")
        usage.completion_tokens = told.get("completion_tokens")
    return usage


class ReportedUsage(ChatModel):
    def predict(self, context, messages, params) -> ChatResponse:
        answer = ChatResponse(choices=[{"message": {"role": "assistant", "content": "ok"}}])
        answer.usage = _usage(messages)
        return answer

    def predict_stream(self, context, messages, params):
        yield ChatChunk(choices=[{"delta": {"role": "assistant", "content": "ok"}}])
        last = ChatChunk(choices=[{"delta": {}, "finish_reason": "stop"}])
        last.usage = _usage(messages)
        yield last
