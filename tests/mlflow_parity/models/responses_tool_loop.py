"""A ResponsesAgent with a tool-calling loop that streams, as MLflow's tool-calling example: a
stand-in LLM (deterministic, so both sides answer alike) asks for a tool, the agent runs it and
feeds the result back until the LLM answers in text, streamed word by word."""

# ruff: noqa: F403, F405 (the types come from parity_types, which each side provides)
import json

from parity_types import *

INPUT_EXAMPLE = {"input": [{"role": "user", "content": "What is 6 times 7?"}]}


def multiply(a: int, b: int) -> int:
    return a * b


TOOLS = {"multiply": multiply}


def stand_in_llm(messages: list[dict]) -> dict:
    """One chat-completions answer: a tool call for the two numbers of the question, or, once
    the tool has answered, the answer in words."""
    last = messages[-1]
    if last["role"] == "tool":
        return {"role": "assistant", "content": f"The answer is {last['content']}."}
    words = last["content"].replace("?", " ").split()
    numbers = [int(word) for word in words if word.isdigit()]
    if len(numbers) < 2:
        return {"role": "assistant", "content": "Give me two numbers."}
    arguments = json.dumps({"a": numbers[0], "b": numbers[1]})
    call = {"id": f"call_{len(messages)}", "type": "function"}
    call["function"] = {"name": "multiply", "arguments": arguments}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


class ToolLoopAgent(ResponsesAgent):
    def __init__(self, max_iterations: int = 5):
        self.max_iterations = max_iterations

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        outputs = [
            event.item
            for event in self.predict_stream(request)
            if event.type == "response.output_item.done"
        ]
        return ResponsesAgentResponse(output=outputs, custom_outputs=request.custom_inputs)

    def predict_stream(self, request: ResponsesAgentRequest):
        messages = self.prep_msgs_for_cc_llm(request.input)
        for step in range(self.max_iterations):
            answer = stand_in_llm(messages)
            if answer.get("tool_calls"):
                for call in answer["tool_calls"]:
                    function = call["function"]
                    item = self.create_function_call_item(
                        f"fc_{step}", call["id"], function["name"], function["arguments"]
                    )
                    yield ResponsesAgentStreamEvent(type="response.output_item.done", item=item)
                    result = str(TOOLS[function["name"]](**json.loads(function["arguments"])))
                    output = self.create_function_call_output_item(call["id"], result)
                    yield ResponsesAgentStreamEvent(type="response.output_item.done", item=output)
                    messages.extend(self.prep_msgs_for_cc_llm([item, output]))
                continue
            item_id = f"msg_{step}"
            words = answer["content"].split(" ")
            for index, word in enumerate(words):
                delta = word if index == 0 else " " + word
                yield ResponsesAgentStreamEvent(**self.create_text_delta(delta, item_id))
            item = self.create_text_output_item(answer["content"], item_id)
            yield ResponsesAgentStreamEvent(
                type="response.output_item.done", item=item, custom_outputs={"steps": step + 1}
            )
            return
        item = self.create_text_output_item("Max iterations reached. Stopping.", "msg_max")
        yield ResponsesAgentStreamEvent(type="response.output_item.done", item=item)
