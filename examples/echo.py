"""The demo model: echoes the last user message back, word for word (streams word by word).

It has no tokenizer, so its usage counts whitespace-separated words, and says so: prompt
"tokens" are the words of every message's text, completion "tokens" the words it answers.
"""

from chatmodels import ChatChunk, ChatModel, ChatResponse


def _text(message) -> str:
    content = message.content
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(part.text for part in content if getattr(part, "type", "") == "text")
    return content or ""


def _usage(messages, answer: str) -> dict[str, int]:
    prompt = sum(len(_text(message).split()) for message in messages)
    completion = len(answer.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class EchoModel(ChatModel):
    def predict(self, context, messages, params) -> ChatResponse:
        text = _text(messages[-1]) if messages else ""
        return ChatResponse(
            choices=[{"message": {"role": "assistant", "content": text}}],
            usage=_usage(messages, text),
        )

    def predict_stream(self, context, messages, params):
        text = _text(messages[-1]) if messages else ""
        for i, word in enumerate(text.split(" ")):
            piece = word if i == 0 else " " + word
            yield ChatChunk(choices=[{"delta": {"role": "assistant", "content": piece}}])
        # The last chunk reports the usage: the server sends it when the client asks for it.
        yield ChatChunk(
            choices=[{"delta": {}, "finish_reason": "stop"}], usage=_usage(messages, text)
        )
