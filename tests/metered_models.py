"""A model that reports exact usage, for the metrics, tracing and limits tests (in process and
through the real server: `tests/metered_models.py:WordCount`).

It echoes the last message. Its usage counts words: prompt tokens = the words it was sent,
completion tokens = the words it answered (the same). Streamed, it yields a word per chunk and
the usage on its last chunk. "raise" raises; "sleep S ..." sleeps S seconds first; "hold S ..."
streams its first word, then waits S seconds before the rest.
"""

from __future__ import annotations

import time

from chatmodels import ChatChunk, ChatModel, ChatResponse


def _words(messages) -> list[str]:
    content = messages[-1].content if messages else ""
    return content.split() if isinstance(content, str) else []


def _usage(words: list[str]) -> dict[str, int]:
    return {
        "prompt_tokens": len(words),
        "completion_tokens": len(words),
        "total_tokens": 2 * len(words),
    }


def _start(words: list[str]) -> None:
    if words[:1] == ["raise"]:
        raise RuntimeError("the model failed on purpose")
    if words[:1] == ["sleep"]:
        time.sleep(float(words[1]))


class WordCount(ChatModel):
    def predict(self, context, messages, params):
        words = _words(messages)
        _start(words)
        return ChatResponse(
            choices=[{"message": {"role": "assistant", "content": " ".join(words)}}],
            usage=_usage(words),
        )

    def predict_stream(self, context, messages, params):
        words = _words(messages)
        _start(words)
        for index, word in enumerate(words):
            yield ChatChunk(choices=[{"delta": {"role": "assistant", "content": word + " "}}])
            if index == 0 and word == "hold":
                time.sleep(float(words[1]))
        yield ChatChunk(choices=[{"delta": {}, "finish_reason": "stop"}], usage=_usage(words))
