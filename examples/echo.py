"""The demo model: echoes the last user message back, word for word (streams word by word)."""

from chatmodels import ChatChunk, ChatModel, ChatResponse


def _last_text(messages) -> str:
    content = messages[-1].content if messages else ""
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(part.text for part in content if getattr(part, "type", "") == "text")
    return content or ""


class EchoModel(ChatModel):
    def predict(self, context, messages, params) -> ChatResponse:
        text = _last_text(messages)
        words = len(text.split())
        return ChatResponse(
            choices=[{"message": {"role": "assistant", "content": text}}],
            usage={"prompt_tokens": words, "completion_tokens": words, "total_tokens": 2 * words},
        )

    def predict_stream(self, context, messages, params):
        words = _last_text(messages).split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            yield ChatChunk(choices=[{"delta": {"role": "assistant", "content": piece}}])
        yield ChatChunk(choices=[{"delta": {}, "finish_reason": "stop"}])
