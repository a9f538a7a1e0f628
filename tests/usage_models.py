"""A model for the usage tests (registered by path, so real servers load it too): it echoes the
last message and reports one prompt token per word of it and one completion token per word it
answers, in `predict` and on the last chunk of `predict_stream`.

"raise" makes `predict` raise; "break here" makes the stream fail after its first chunk.
"""

from __future__ import annotations

from chatmodels import ChatChunk, ChatModel, ChatResponse


def _text(messages) -> str:
    content = messages[-1].content if messages else ""
    return content if isinstance(content, str) else ""


def _usage(text: str) -> dict[str, int]:
    words = len(text.split())
    return {"prompt_tokens": words, "completion_tokens": words, "total_tokens": 2 * words}


class TokenEcho(ChatModel):
    def predict(self, context, messages, params) -> ChatResponse:
        text = _text(messages)
        if text == "raise":
            raise RuntimeError("asked to fail")
        return ChatResponse(
            choices=[{"message": {"role": "assistant", "content": text}}], usage=_usage(text)
        )

    def predict_stream(self, context, messages, params):
        text = _text(messages)
        for index, word in enumerate(text.split()):
            if index == 1 and text.startswith("break"):
                raise RuntimeError("the stream broke")
            yield ChatChunk(choices=[{"delta": {"role": "assistant", "content": word + " "}}])
        yield ChatChunk(choices=[{"delta": {}, "finish_reason": "stop"}], usage=_usage(text))
