# ruff: noqa: F403, F405 (the types come from parity_types, which each side provides)
from parity_types import *

INPUT_EXAMPLE = [ChatMessage(role="user", content="one two three")]


class WordStreamModel(ChatModel):
    def _words(self, messages):
        return messages[-1].content.split()

    def predict(self, context, messages, params):
        text = " ".join(self._words(messages))
        return ChatCompletionResponse(
            choices=[ChatChoice(message=ChatMessage(role="assistant", content=text))]
        )

    def predict_stream(self, context, messages, params):
        for i, word in enumerate(self._words(messages)):
            yield ChatCompletionChunk(
                choices=[
                    ChatChunkChoice(delta=ChatChoiceDelta(content=word if i == 0 else " " + word))
                ]
            )
        yield ChatCompletionChunk(
            choices=[ChatChunkChoice(delta=ChatChoiceDelta(), finish_reason="stop")]
        )
