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


class ParamsReportModel(ChatModel):
    """Answers with a JSON report of the Python types and values `predict` received."""

    def predict(self, context, messages, params):
        import json

        report = {
            "messages_type": type(messages).__name__,
            "message_types": [type(message).__name__ for message in messages],
            "roles": [message.role for message in messages],
            "contents": [
                message.content
                if isinstance(message.content, str) or message.content is None
                else [type(part).__name__ for part in message.content]
                for message in messages
            ],
            "params_type": type(params).__name__,
            "params_has_messages": hasattr(params, "messages"),
            "params": params.to_dict(),
            "tool_types": [type(tool).__name__ for tool in params.tools or []],
            "tool_function_types": [type(tool.function).__name__ for tool in params.tools or []],
            "tool_parameters_types": [
                type(tool.function.parameters).__name__ for tool in params.tools or []
            ],
        }
        return _reply(json.dumps(report, sort_keys=True))


class WrongSignatureModel(ChatModel):
    """`predict` without the params: the server could not call it."""

    def predict(self, messages):
        return _reply("never")


class LockInInitModel(ChatModel):
    """Keeps a lock made in `__init__`: it cannot be saved with the version."""

    def __init__(self):
        import threading

        self.lock = threading.Lock()

    def predict(self, context, messages, params):
        return _reply("locked")


class HistoryReportModel(ChatModel):
    """Answers with the messages it received, as JSON (`to_dict` of each)."""

    def predict(self, context, messages, params):
        import json

        return _reply(json.dumps([message.to_dict() for message in messages], sort_keys=True))


class ToolCallingModel(ChatModel):
    """Calls the `get_weather` tool with the last message as the city."""

    def predict(self, context, messages, params):
        import json

        return ChatResponse(
            choices=[
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "call_weather_1",
                                "type": "function",
                                "function": {
                                    "name": "get_weather",
                                    "arguments": json.dumps({"city": _last_text(messages)}),
                                },
                            }
                        ],
                    },
                }
            ],
            usage={"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        )


class LogprobsModel(ChatModel):
    """Echoes with per-token log probabilities; the `bytes` of each token are left out."""

    def predict(self, context, messages, params):
        text = _last_text(messages) or "hi"
        return ChatResponse(
            choices=[
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": {
                        "content": [
                            {
                                "token": text,
                                "logprob": -0.25,
                                "top_logprobs": [{"token": text, "logprob": -0.25}],
                            }
                        ]
                    },
                }
            ]
        )


class PrefixModel(ChatModel):
    """Echoes the last message after a fixed prefix, so that versions can be told apart."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def predict(self, context, messages, params):
        return _reply(self.prefix + _last_text(messages))


class BadChunkStreamingModel(ChatModel):
    """Streams one good chunk, then yields something that is not a ChatChunk."""

    def predict(self, context, messages, params):
        return _reply(_last_text(messages))

    def predict_stream(self, context, messages, params):
        yield ChatChunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": "ok "}}])
        yield {"not": "a chunk"}


class ContentPartsModel(ChatModel):
    """Answers with its content as a list of text parts, and leaves usage and id out."""

    def predict(self, context, messages, params):
        return ChatResponse(
            choices=[
                {
                    "message": {
                        "role": "assistant",
                        "content": [
                            {"type": "text", "text": "part one, "},
                            {"type": "text", "text": "part two"},
                        ],
                    }
                }
            ]
        )


class MessagesReportModel(ChatModel):
    """Answers with a JSON report of the messages and params `predict` received, as dicts."""

    def predict(self, context, messages, params):
        import json

        report = {
            "messages": [message.to_dict() for message in messages],
            "params": params.to_dict(),
        }
        return ChatResponse(
            choices=[{"message": {"role": "assistant", "content": json.dumps(report)}}]
        )


def _words(messages) -> int:
    return sum(
        len(message.content.split()) for message in messages if isinstance(message.content, str)
    )


class ToolRoundTripModel(ChatModel):
    """A tool-calling model, as an agent framework meets one:

    - the last message is a tool result: answers "The tool said: <result>";
    - tools are given: calls the first one with `{"city": <last message>}`;
    - else echoes the last message, cut to `max_tokens` words (finish_reason "length").

    Streams the same answers in pieces (arguments in two deltas); usage counts words.
    """

    def _answer(self, messages, params) -> tuple[str | None, dict | None, str]:
        import json

        last = messages[-1]
        if last.role == "tool":
            return f"The tool said: {last.content}", None, "stop"
        if params.tools:
            arguments = json.dumps({"city": _last_text(messages)})
            call = {
                "id": "call_rt_1",
                "name": params.tools[0].function.name,
                "arguments": arguments,
            }
            return None, call, "tool_calls"
        words = _last_text(messages).split()
        if params.max_tokens is not None and len(words) > params.max_tokens:
            return " ".join(words[: params.max_tokens]), None, "length"
        return " ".join(words), None, "stop"

    def _usage(self, messages, text: str | None, call: dict | None) -> dict:
        completion = len((text or call["arguments"]).split())
        prompt = _words(messages)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def predict(self, context, messages, params):
        text, call, finish_reason = self._answer(messages, params)
        message = {"role": "assistant", "content": text}
        if call is not None:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ]
        return ChatResponse(
            choices=[{"message": message, "finish_reason": finish_reason}],
            usage=self._usage(messages, text, call),
        )

    def predict_stream(self, context, messages, params):
        text, call, finish_reason = self._answer(messages, params)
        if call is None:
            for i, word in enumerate(text.split(" ")):
                yield ChatChunk(choices=[{"delta": {"content": word if i == 0 else " " + word}}])
        else:
            head = {"index": 0, "id": call["id"], "type": "function"}
            yield ChatChunk(
                choices=[{"delta": {"tool_calls": [{**head, "function": {"name": call["name"]}}]}}]
            )
            middle = len(call["arguments"]) // 2
            for piece in (call["arguments"][:middle], call["arguments"][middle:]):
                yield ChatChunk(
                    choices=[
                        {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}}
                    ]
                )
        yield ChatChunk(
            choices=[{"delta": {}, "finish_reason": finish_reason}],
            usage=self._usage(messages, text, call),
        )


class RefusingModel(ChatModel):
    """Refuses, without reporting usage (streams the refusal in two pieces)."""

    def predict(self, context, messages, params):
        return ChatResponse(
            choices=[{"message": {"role": "assistant", "refusal": "I can't help with that."}}]
        )

    def predict_stream(self, context, messages, params):
        for piece in ("I can't ", "help with that."):
            yield ChatChunk(choices=[{"delta": {"refusal": piece}}])
        yield ChatChunk(choices=[{"delta": {}, "finish_reason": "stop"}])


class PartialUsageModel(ChatModel):
    """Reports only its completion token count."""

    def predict(self, context, messages, params):
        return ChatResponse(
            choices=[{"message": {"role": "assistant", "content": "ok"}}],
            usage={"completion_tokens": 1},
        )
