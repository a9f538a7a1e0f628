"""Models for the tests through the real server (tests/test_server.py).

Each answers the default input example ("Hello!") at once, so registration never waits; any
other message gets the behaviour under test. Models that record what happened write one file
per event into `model_config["record_dir"]`, which the test reads from outside the server.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid

from chatmodels import ChatChunk, ChatModel, ChatResponse

REGISTRATION_TEXT = "Hello!"


def reply(text: str) -> ChatResponse:
    return ChatResponse(choices=[{"message": {"role": "assistant", "content": text}}])


def chunk(text: str, finish_reason: str | None = None) -> ChatChunk:
    return ChatChunk(choices=[{"delta": {"content": text}, "finish_reason": finish_reason}])


def record(context, event: str) -> None:
    directory = context.model_config.get("record_dir")
    if directory:
        path = os.path.join(directory, f"{event}-{uuid.uuid4().hex}")
        with open(path, "w"):
            pass


class Sleep(ChatModel):
    """Waits `seconds` (model config) like an upstream LLM; answers how many calls overlapped."""

    def load_context(self, context) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def predict(self, context, messages, params) -> ChatResponse:
        if messages[-1].content == REGISTRATION_TEXT:
            return reply("ready")
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(float(context.model_config.get("seconds", 0.5)))
        finally:
            with self.lock:
                self.running -= 1
        return reply(f"slept; at most {self.most} at once")


class AsyncEcho(ChatModel):
    """async load_context, predict and predict_stream: echoes the last message word by word."""

    async def load_context(self, context) -> None:
        await asyncio.sleep(0)
        self.prefix = context.model_config.get("prefix", "async:")

    async def predict(self, context, messages, params) -> ChatResponse:
        await asyncio.sleep(0.01)
        return reply(f"{self.prefix} {messages[-1].content}")

    async def predict_stream(self, context, messages, params):
        yield chunk(self.prefix)
        for word in str(messages[-1].content).split():
            await asyncio.sleep(0.01)
            yield chunk(f" {word}")
        yield chunk("", finish_reason="stop")


class SyncTicker(ChatModel):
    """Streams a chunk every 0.1 s for 10 s, recording when it starts and when it is closed."""

    def predict(self, context, messages, params) -> ChatResponse:
        return reply("tick")

    def predict_stream(self, context, messages, params):
        record(context, "start")
        try:
            for index in range(100):
                yield chunk(f"{index} ")
                time.sleep(0.1)
        finally:
            record(context, "finally")


class AsyncTicker(ChatModel):
    """The async twin of SyncTicker: cancelled at its `await` when the client goes away."""

    def predict(self, context, messages, params) -> ChatResponse:
        return reply("tick")

    async def predict_stream(self, context, messages, params):
        record(context, "start")
        try:
            for index in range(100):
                yield chunk(f"{index} ")
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            record(context, "cancelled")
            raise
        finally:
            record(context, "finally")


class SlowStart(ChatModel):
    """Thinks for `seconds` before its first chunk (keep-alives are due meanwhile)."""

    def predict(self, context, messages, params) -> ChatResponse:
        return reply("ready")

    def predict_stream(self, context, messages, params):
        time.sleep(float(context.model_config.get("seconds", 1)))
        yield chunk("finally", finish_reason="stop")


class Stuck(ChatModel):
    """Never answers in time (sync): its thread can only be abandoned."""

    def predict(self, context, messages, params) -> ChatResponse:
        if messages[-1].content == REGISTRATION_TEXT:
            return reply("ready")
        time.sleep(60)
        return reply("too late")


class AsyncStuck(ChatModel):
    """Never answers in time (async): cancelled at the timeout, which it records."""

    async def predict(self, context, messages, params) -> ChatResponse:
        if messages[-1].content == REGISTRATION_TEXT:
            return reply("ready")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            record(context, "cancelled")
            raise
        return reply("too late")


class Flood(ChatModel):
    """Streams 64 KiB chunks as fast as it can, up to 100 MB, recording when it is closed."""

    def predict(self, context, messages, params) -> ChatResponse:
        return reply("flood")

    async def predict_stream(self, context, messages, params):
        text = "x" * 65536
        try:
            for _ in range(1600):
                yield chunk(text)
        finally:
            record(context, "finally")
