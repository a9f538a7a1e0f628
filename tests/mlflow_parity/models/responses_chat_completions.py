"""A ResponsesAgent wrapping a chat-completions call, as MLflow's simple chat example: the input
items become chat messages with `prep_msgs_for_cc_llm`, the LLM's stream of chunks becomes the
agent's events with `output_to_responses_items_stream`. The LLM is a deterministic stand-in that
says what it was sent."""

# ruff: noqa: F403, F405 (the types come from parity_types, which each side provides)
from parity_types import *

INPUT_EXAMPLE = {"input": [{"role": "user", "content": "Hello there"}]}


def stand_in_chat_stream(messages: list[dict]):
    """Chat-completion chunks: the roles it was sent, then the last text, words reversed."""
    roles = ",".join(message["role"] for message in messages)
    last = messages[-1].get("content") or ""
    words = [f"[{roles}]", *reversed(last.split())]
    for index, word in enumerate(words):
        delta = {"content": word if index == 0 else " " + word}
        if index == 0:
            delta["role"] = "assistant"
        yield {"id": "chatcmpl-stand-in", "choices": [{"index": 0, "delta": delta}]}
    yield {
        "id": "chatcmpl-stand-in",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }


class ChatCompletionsAgent(ResponsesAgent):
    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        outputs = [
            event.item
            for event in self.predict_stream(request)
            if event.type == "response.output_item.done"
        ]
        return ResponsesAgentResponse(output=outputs, custom_outputs=request.custom_inputs)

    def predict_stream(self, request: ResponsesAgentRequest):
        messages = [{"role": "system", "content": "You are helpful."}]
        messages += self.prep_msgs_for_cc_llm([item.model_dump() for item in request.input])
        aggregated = []
        yield from self.output_to_responses_items_stream(
            stand_in_chat_stream(messages), aggregator=aggregated
        )
