# ruff: noqa: F403, F405 (the types come from parity_types, which each side provides)
from parity_types import *

INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "Hi"}]}


class StreamedToolCallModel(ChatModel):
    def predict(self, context, messages, params):
        call = FunctionToolCallArguments(name="lookup", arguments="{}").to_tool_call("c1")
        return ChatCompletionResponse(
            choices=[
                ChatChoice(
                    message=ChatMessage(role="assistant", tool_calls=[call]),
                    finish_reason="tool_calls",
                )
            ]
        )

    def predict_stream(self, context, messages, params):
        call = FunctionToolCallArguments(name="lookup", arguments='{"q": 1}').to_tool_call("c1")
        yield ChatCompletionChunk(
            choices=[ChatChunkChoice(delta=ChatChoiceDelta(tool_calls=[call]))]
        )
        yield ChatCompletionChunk(
            choices=[ChatChunkChoice(delta=ChatChoiceDelta(), finish_reason="tool_calls")]
        )
