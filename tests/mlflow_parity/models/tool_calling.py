# ruff: noqa: F403, F405 (the types come from parity_types, which each side provides)
import json

from parity_types import *

INPUT_EXAMPLE = (
    [ChatMessage(role="user", content="Weather in Oslo?")],
    {"temperature": 0.0},
)


class ToolModel(ChatModel):
    def predict(self, context, messages, params):
        if not params.tools:
            message = ChatMessage(role="assistant", content="no tools")
            return ChatCompletionResponse(choices=[ChatChoice(message=message)])
        function = params.tools[0].function
        arguments = {}
        for name, prop in function.parameters.properties.items():
            # ParamProperty: attributes, nested items
            if prop.type == "array":
                arguments[name] = [prop.items.type, type(prop.items).__name__]
            elif prop.enum:
                arguments[name] = prop.enum[0]
            else:
                arguments[name] = f"{prop.type}: {prop.description}"
        call = FunctionToolCallArguments(
            name=function.name, arguments=json.dumps(arguments)
        ).to_tool_call(id="call_1")
        return ChatCompletionResponse(
            choices=[
                ChatChoice(
                    message=ChatMessage(role="assistant", tool_calls=[call]),
                    finish_reason="tool_calls",
                )
            ]
        )
