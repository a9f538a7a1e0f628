"""A ChatAgent, as MLflow's ChatAgent examples: one assistant message per answer (ids as the
author sets them), context and custom inputs read, a stream of chunks sharing the message id."""

# ruff: noqa: F403, F405 (the types come from parity_types, which each side provides)
from parity_types import *

INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "Hello!"}]}


class EchoChatAgent(ChatAgent):
    def _reply(self, messages, context):
        who = context.user_id if context and context.user_id else "someone"
        return f"{who} said: {messages[-1].content} ({len(messages)} messages)"

    def predict(self, messages, context=None, custom_inputs=None) -> ChatAgentResponse:
        reply = ChatAgentMessage(role="assistant", content=self._reply(messages, context), id="m1")
        return ChatAgentResponse(
            messages=[reply],
            finish_reason="stop",
            custom_outputs={"echo": custom_inputs} if custom_inputs else None,
        )

    def predict_stream(self, messages, context=None, custom_inputs=None):
        words = self._reply(messages, context).split(" ")
        for index, word in enumerate(words):
            content = word if index == 0 else " " + word
            yield ChatAgentChunk(delta=ChatAgentMessage(role="assistant", content=content, id="m1"))
        yield ChatAgentChunk(
            delta=ChatAgentMessage(role="assistant", content="", id="m1"),
            finish_reason="stop",
            usage={"prompt_tokens": len(messages), "completion_tokens": len(words)},
        )
