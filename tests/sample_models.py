"""ChatModels used by the tests: well-behaved ones and each kind of misbehaviour."""

from __future__ import annotations

import time

from chatmodels import ChatChunk, ChatModel, ChatResponse


def _last_text(messages) -> str:
    content = messages[-1].content if messages else ""
    return content if isinstance(content, str) else ""


def _reply(text: str, **extra) -> ChatResponse:
    return ChatResponse(
        choices=[{"index": 0, "message": {"role": "assistant", "content": text}}],
        usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        **extra,
    )


class TriggerModel(ChatModel):
    """Echoes, except: "raise" raises, "garbage" returns a dict, "slow" sleeps 0.5 s first."""

    def predict(self, context, messages, params):
        text = _last_text(messages)
        if text == "raise":
            raise RuntimeError("secret internal detail /etc/passwd")
        if text == "garbage":
            return {"not": "a ChatResponse"}
        if text == "slow":
            time.sleep(0.5)
        return _reply(text)


class StreamingModel(ChatModel):
    """Streams the last message back word by word; "raise" fails after the first chunk."""

    def predict(self, context, messages, params):
        return _reply(_last_text(messages))

    def predict_stream(self, context, messages, params):
        words = _last_text(messages).split(" ")
        for i, word in enumerate(words):
            if i == 1 and words[0] == "raise":
                raise RuntimeError("stream broke")
            yield ChatChunk(
                choices=[{"index": 0, "delta": {"role": "assistant", "content": word + " "}}]
            )
        yield ChatChunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])


class ConfiguredModel(ChatModel):
    """Answers with its model_config greeting and the content of its `greeting` artifact."""

    def load_context(self, context):
        with open(context.artifacts["greeting"]) as f:
            self.artifact_text = f.read().strip()

    def predict(self, context, messages, params):
        return _reply(f"{context.model_config.get('prefix', '')}{self.artifact_text}")


class RaisingModel(ChatModel):
    def predict(self, context, messages, params):
        raise ValueError("model exploded")


class DictOutputModel(ChatModel):
    def predict(self, context, messages, params):
        return {"choices": [{"message": {"role": "assistant", "content": "hi"}}]}


class StringOutputModel(ChatModel):
    def predict(self, context, messages, params):
        return "hello"


class BadNestedOutputModel(ChatModel):
    """Returns a ChatResponse whose nested message was corrupted after construction."""

    def predict(self, context, messages, params):
        response = _reply("ok")
        response.choices[0].message.content = 42
        return response


class NotAChatModel:
    def predict(self, context, messages, params):
        return _reply("nope")
