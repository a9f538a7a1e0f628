# ruff: noqa: F403, F405 (the types come from parity_types, which each side provides)
from parity_types import *

INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "Hi"}]}


class TracedStreamModel(ChatModel):
    def predict(self, context, messages, params):
        return ChatCompletionResponse(
            choices=[ChatChoice(message=ChatMessage(role="assistant", content="done"))],
            custom_outputs={"trace_id": "t-1"},
        )

    def predict_stream(self, context, messages, params):
        yield ChatCompletionChunk(
            choices=[ChatChunkChoice(delta=ChatChoiceDelta(role="assistant", content="do"))]
        )
        yield ChatCompletionChunk(
            choices=[ChatChunkChoice(delta=ChatChoiceDelta(content="ne"))],
            custom_outputs={"trace_id": "t-1", "step": 2, "parent": None},
        )
