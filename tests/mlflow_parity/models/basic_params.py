# ruff: noqa: F403, F405 (the types come from parity_types, which each side provides)
import json

from parity_types import *

INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "Hello!"}], "temperature": 0.5}


class ParamsModel(ChatModel):
    def predict(self, context, messages, params):
        seen = {
            "roles": [m.role for m in messages],
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
            "stop": params.stop,
            "n": params.n,
            "top_p": params.top_p,
            "custom_inputs": params.custom_inputs,
        }
        return ChatCompletionResponse(
            choices=[
                ChatChoice(
                    message=ChatMessage(role="assistant", content=json.dumps(seen)),
                    finish_reason="length",
                )
            ],
            usage=TokenUsageStats(prompt_tokens=3, completion_tokens=5, total_tokens=8),
            custom_outputs={"echo": params.custom_inputs, "nothing": None},
        )
