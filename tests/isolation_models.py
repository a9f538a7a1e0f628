"""Models that misbehave on purpose, for tests/test_model_isolation.py (registered from this file
into a real server, each run in model workers of its own)."""

from __future__ import annotations

import asyncio
import json
import os
import time

from chatmodels import ChatModel, ChatResponse

REGISTRATION_TEXT = "Hello!"  # the default input example: registration must pass


def reply(text: str) -> ChatResponse:
    return ChatResponse(choices=[{"message": {"role": "assistant", "content": text}}])


def _text(messages) -> str:
    return messages[-1].content or ""


class Echo(ChatModel):
    def predict(self, context, messages, params) -> ChatResponse:
        return reply(f"echo: {_text(messages)}")


class EnvironmentProbe(ChatModel):
    """Answers which secrets it can see: in its environment, and in files given by path."""

    def predict(self, context, messages, params) -> ChatResponse:
        seen = {name: name in os.environ for name in ("SECRET_KEY", "DATABASE_URL")}
        for path in _text(messages).split()[1:]:
            try:
                with open(path, "rb") as secret:
                    secret.read(1)
                seen[path] = "read"
            except OSError as error:
                seen[path] = type(error).__name__
        return reply(json.dumps(seen))


class Patcher(ChatModel):
    """Patches the gateway's authorization and capacity code in whatever process it runs in."""

    def predict(self, context, messages, params) -> ChatResponse:
        import chatmodels.packaging

        chatmodels.packaging.check_response = lambda value, **kwargs: value
        try:  # the gateway's own modules need its settings, which a worker does not have
            import chatmodels.selectors

            chatmodels.selectors.key_allows = lambda key, model_id: True
            patched = "patched authorization"
        except Exception as error:
            patched = f"could not import the gateway's code: {type(error).__name__}"
        return reply(patched)


class Exiter(ChatModel):
    """Kills its own process on every call but registration's."""

    def predict(self, context, messages, params) -> ChatResponse:
        if _text(messages) != REGISTRATION_TEXT:
            os._exit(3)
        return reply("ready")


class Hang(ChatModel):
    """Never returns (but at registration)."""

    def predict(self, context, messages, params) -> ChatResponse:
        if _text(messages) != REGISTRATION_TEXT:
            time.sleep(3600)
        return reply("ready")


class BlockingAsync(ChatModel):
    """An async model that blocks its event loop for 1.5 s per call."""

    async def predict(self, context, messages, params) -> ChatResponse:
        if _text(messages) != REGISTRATION_TEXT:
            time.sleep(1.5)
        return reply("blocked")


class QuickAsync(ChatModel):
    async def predict(self, context, messages, params) -> ChatResponse:
        await asyncio.sleep(0.01)
        return reply("quick")


class SlowToCancel(ChatModel):
    """Answers at once, but "wait" waits, and once cancelled takes 2.5 s to end; "stuck" never
    ends, even cancelled."""

    async def predict(self, context, messages, params) -> ChatResponse:
        text = _text(messages)
        if text not in ("wait", "stuck"):
            await asyncio.sleep(0.02)
            return reply("quick")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(2.5 if text == "wait" else 3600)
            raise
        return reply("never")
