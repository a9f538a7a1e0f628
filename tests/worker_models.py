"""ChatModels for the model worker tests: each does one thing a worker must survive or show."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from chatmodels import ChatChunk, ChatModel, ChatResponse


def _text(messages) -> str:
    content = messages[-1].content if messages else ""
    return content if isinstance(content, str) else ""


def _reply(text: str) -> ChatResponse:
    return ChatResponse(choices=[{"index": 0, "message": {"role": "assistant", "content": text}}])


def _chunk(text: str) -> ChatChunk:
    return ChatChunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": text}}])


class SyncModel(ChatModel):
    """Echoes; "pid", "env", "django" and "sleep N" say or do what they name."""

    def predict(self, context, messages, params):
        text = _text(messages)
        if text == "pid":
            return _reply(str(os.getpid()))
        if text == "env":
            return _reply(json.dumps(dict(os.environ)))
        if text == "django":
            return _reply(str(any(name.startswith("django") for name in sys.modules)))
        if text.startswith("sleep "):
            time.sleep(float(text.split()[1]))
        return _reply(text)


class AsyncModel(ChatModel):
    """Async echo; "sleep" waits until cancelled; "sleeping?" and "cancelled?" say whether it
    has started to, and whether it was."""

    sleeping = cancelled = False

    async def predict(self, context, messages, params):
        text = _text(messages)
        if text == "sleep":
            type(self).sleeping = True
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                type(self).cancelled = True
                raise
        if text in ("sleeping?", "cancelled?"):
            return _reply(str(getattr(type(self), text[:-1])))
        await asyncio.sleep(0)
        return _reply(text)


class SyncStreamModel(ChatModel):
    def predict(self, context, messages, params):
        return _reply(_text(messages))

    def predict_stream(self, context, messages, params):
        for word in _text(messages).split():
            yield _chunk(word)


class AsyncStreamModel(ChatModel):
    def predict(self, context, messages, params):
        return _reply(_text(messages))

    async def predict_stream(self, context, messages, params):
        for word in _text(messages).split():
            await asyncio.sleep(0)
            yield _chunk(word)


class FloodModel(ChatModel):
    """Streams 1 MB chunks without end; "count" says how many it has yielded so far."""

    yielded = 0

    def predict(self, context, messages, params):
        return _reply(str(type(self).yielded))

    def predict_stream(self, context, messages, params):
        while True:
            type(self).yielded += 1
            yield _chunk("x" * (1024 * 1024))


class CrashingModel(ChatModel):
    """Echoes; "exit" ends the process at once, "exit later" after 0.3 s; "wait" takes 2 s."""

    def predict(self, context, messages, params):
        text = _text(messages)
        if text == "wait":
            time.sleep(2)
        if text == "exit later":
            time.sleep(0.3)
            os._exit(3)
        if text == "exit":
            os._exit(3)
        if text == "pid":
            return _reply(str(os.getpid()))
        return _reply(text)


class HungModel(ChatModel):
    """A sync predict that never returns (and cannot be stopped)."""

    def predict(self, context, messages, params):
        if _text(messages) == "pid":
            return _reply(str(os.getpid()))
        while True:
            time.sleep(1)


class HogModel(ChatModel):
    """Fills 200 MB, then takes 3 s to answer."""

    def predict(self, context, messages, params):
        kept = b"x" * (200 * 1024 * 1024)
        time.sleep(3)
        return _reply(str(len(kept)))


class PatchingModel(ChatModel):
    """Turns off output checks, in whatever process it runs in, then answers with a dict."""

    def predict(self, context, messages, params):
        import chatmodels.packaging
        import chatmodels.types

        chatmodels.packaging.check_response = lambda value, **kwargs: value
        chatmodels.types.ChatResponse.validate = lambda self, path="": None
        return {"patched": True}


class LoadFailModel(ChatModel):
    def load_context(self, context):
        raise OSError("weights.bin is missing")

    def predict(self, context, messages, params):
        return _reply("never")


class ProbeModel(ChatModel):
    """Answers what happened on "read PATH", and on "write" (in its temporary folder)."""

    def predict(self, context, messages, params):
        command, _, path = _text(messages).partition(" ")
        try:
            if command == "read":
                with open(path) as file:
                    file.read()
            elif command == "write":
                import tempfile

                with tempfile.NamedTemporaryFile() as file:
                    file.write(b"scratch")
        except OSError as error:
            return _reply(type(error).__name__)
        return _reply("ok")


class SyncUpstreamModel(ChatModel):
    """A sync model on `context.http_sync`: asks `model_config["base_url"]`, streams its SSE."""

    def load_context(self, context) -> None:
        self.url = context.model_config["base_url"] + "/chat/completions"

    def _post(self, context, messages, stream: bool):
        body = {"model": "sync", "messages": [m.to_dict() for m in messages], "stream": stream}
        return context.http_sync.request("POST", self.url, json=body, preload_content=not stream)

    def predict(self, context, messages, params):
        return ChatResponse.from_dict(self._post(context, messages, False).json())

    def predict_stream(self, context, messages, params):
        reply = self._post(context, messages, True)
        try:
            for line in reply.read_chunked() if reply.chunked else reply.stream():
                for event in line.split(b"\n\n"):
                    if event.startswith(b"data: {"):
                        yield ChatChunk.from_dict(json.loads(event[6:]))
        finally:
            reply.release_conn()


class SlowLoadModel(SyncModel):
    """Echoes, after a load of two seconds (a worker that is still starting for a while)."""

    def load_context(self, context):
        time.sleep(2)
