"""The serving benchmark's models (bench/serving.sh): slow answers and timed streams.

- `SleepModel` waits 500 ms (as if for an upstream LLM) with `time.sleep`, then echoes the last
  user message; `AsyncSleepModel` does the same with `await asyncio.sleep`.
- `StreamModel` streams `CHUNKS` chunks `INTERVAL` seconds apart (`time.sleep`); each chunk's
  content is the `time.time()` at the moment it is yielded (`"1795587797.123456 "`), so a client
  on the same machine can tell how long the chunk took to reach it. `AsyncStreamModel` is the
  same with `async def predict_stream` (an async generator) and `asyncio.sleep`.

Registered with `manage.py register_model NAME bench/models.py:CLASS`.
"""

import asyncio
import time

from chatmodels import ChatChunk, ChatModel, ChatResponse

SLEEP = 0.5  # seconds a SleepModel answer takes
CHUNKS = 20  # content chunks per stream
INTERVAL = 0.05  # seconds between two chunks


def _last_text(messages) -> str:
    content = messages[-1].content if messages else ""
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(part.text for part in content if getattr(part, "type", "") == "text")
    return content or ""


def _echo(messages) -> ChatResponse:
    text = _last_text(messages)
    words = len(text.split())
    return ChatResponse(
        choices=[{"message": {"role": "assistant", "content": text}}],
        usage={"prompt_tokens": words, "completion_tokens": words, "total_tokens": 2 * words},
    )


def _stamped() -> ChatChunk:
    """A chunk whose content is the time it was made: the client subtracts it from arrival."""
    return ChatChunk(choices=[{"delta": {"role": "assistant", "content": f"{time.time():.6f} "}}])


def _stop() -> ChatChunk:
    return ChatChunk(choices=[{"delta": {}, "finish_reason": "stop"}])


def _stamped_response() -> ChatResponse:
    return ChatResponse(
        choices=[{"message": {"role": "assistant", "content": f"{time.time():.6f}"}}]
    )


class SleepModel(ChatModel):
    """Waits SLEEP seconds on the request's thread, then echoes the last user message."""

    def predict(self, context, messages, params) -> ChatResponse:
        time.sleep(SLEEP)
        return _echo(messages)


class AsyncSleepModel(ChatModel):
    """Awaits SLEEP seconds (no thread held while waiting), then echoes the last user message."""

    async def predict(self, context, messages, params) -> ChatResponse:
        await asyncio.sleep(SLEEP)
        return _echo(messages)


class StreamModel(ChatModel):
    """CHUNKS time-stamped chunks, INTERVAL seconds apart (time.sleep), then a stop chunk."""

    def predict(self, context, messages, params) -> ChatResponse:
        return _stamped_response()

    def predict_stream(self, context, messages, params):
        for i in range(CHUNKS):
            if i:
                time.sleep(INTERVAL)
            yield _stamped()
        yield _stop()


class AsyncStreamModel(ChatModel):
    """CHUNKS time-stamped chunks, INTERVAL seconds apart (asyncio.sleep), then a stop chunk."""

    async def predict(self, context, messages, params) -> ChatResponse:
        return _stamped_response()

    async def predict_stream(self, context, messages, params):
        for i in range(CHUNKS):
            if i:
                await asyncio.sleep(INTERVAL)
            yield _stamped()
        yield _stop()


class AiohttpForwardModel(ChatModel):
    """Forwards each request to `model_config["base_url"]`'s /chat/completions with one pooled
    aiohttp client on its worker's event loop: the forwarding workload of bench/forwarding.sh."""

    def load_context(self, context) -> None:
        self.url = context.model_config["base_url"].rstrip("/") + "/chat/completions"
        self.session = None

    async def predict(self, context, messages, params) -> ChatResponse:
        import aiohttp

        if self.session is None:  # made on the worker's loop, on first use
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        body = {"model": "upstream", "messages": [m.to_dict() for m in messages]}
        async with self.session.post(self.url, json=body) as reply:
            return ChatResponse.from_dict(await reply.json())
