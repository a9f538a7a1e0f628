# ruff: noqa: F403, F405 (the types come from parity_types, which each side provides)
from parity_types import *

INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "Hi"}]}


class ContextlessModel(ChatModel):
    def predict(self, messages, params):
        text = f"{len(messages)} message(s), n={params.n}"
        message = ChatMessage(role="assistant", content=text)
        return ChatCompletionResponse(choices=[ChatChoice(message=message)])

    def predict_stream(self, messages, params):
        for piece in ["no ", "context"]:
            yield ChatCompletionChunk(
                choices=[ChatChunkChoice(delta=ChatChoiceDelta(content=piece))]
            )
