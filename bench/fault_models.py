"""The fault benchmark's models (bench/faults.sh): a healthy async model, and models that fail on
purpose beside it.

Each fault model answers like an echo model (registration runs `predict` once on the default
input example, "Hello!", and the bench checks each model once the same way) and misbehaves only
when the last message says `FAULT` ("boom"):

- `ExitModel` kills its own process (`os._exit(1)`).
- `HangModel` never returns (`time.sleep` for a day, on its worker's thread).
- `BlockingAsyncModel` blocks its event loop: `time.sleep(block_seconds)` (5) inside
  `async def predict`.
- `FloodStreamModel` streams `megabytes` (100) of content in chunks of `chunk_kib` (64) KiB.

`block_seconds`, `megabytes` and `chunk_kib` come from the model config
(`manage.py register_model NAME bench/fault_models.py:CLASS --model-config FILE.json`).
"""

import asyncio
import os
import time

# The echo answer of bench/models.py (a sibling module: registration packages it with this one).
from models import _echo, _last_text

from chatmodels import ChatChunk, ChatModel, ChatResponse

FAULT = "boom"  # the last message that makes a fault model misbehave


def _faulty(messages) -> bool:
    return _last_text(messages) == FAULT


class HealthyAsyncModel(ChatModel):
    """The model the normal client calls: an async echo that yields to its loop once."""

    async def predict(self, context, messages, params) -> ChatResponse:
        await asyncio.sleep(0)
        return _echo(messages)


class ExitModel(ChatModel):
    """Kills its own process on every FAULT call."""

    def predict(self, context, messages, params) -> ChatResponse:
        if _faulty(messages):
            os._exit(1)
        return _echo(messages)


class HangModel(ChatModel):
    """Never returns from a FAULT call: its worker's thread sleeps for a day."""

    def predict(self, context, messages, params) -> ChatResponse:
        if _faulty(messages):
            time.sleep(86400)
        return _echo(messages)


class BlockingAsyncModel(ChatModel):
    """An async model that blocks its event loop for `block_seconds` on every FAULT call."""

    def load_context(self, context) -> None:
        self.block_seconds = float(context.model_config.get("block_seconds", 5))

    async def predict(self, context, messages, params) -> ChatResponse:
        if _faulty(messages):
            time.sleep(self.block_seconds)  # on purpose: the loop is stuck meanwhile
        return _echo(messages)


class FloodStreamModel(ChatModel):
    """A stream of `megabytes` of content in `chunk_kib` KiB chunks on a FAULT call (an echo
    otherwise), as fast as it is taken."""

    def load_context(self, context) -> None:
        self.total = int(float(context.model_config.get("megabytes", 100)) * 2**20)
        self.chunk = int(float(context.model_config.get("chunk_kib", 64)) * 2**10)

    def predict(self, context, messages, params) -> ChatResponse:
        return _echo(messages)

    def predict_stream(self, context, messages, params):
        if not _faulty(messages):
            text = _last_text(messages)
            yield ChatChunk(choices=[{"delta": {"role": "assistant", "content": text}}])
        else:
            piece = "x" * self.chunk
            for _ in range(self.total // self.chunk):
                yield ChatChunk(choices=[{"delta": {"role": "assistant", "content": piece}}])
        yield ChatChunk(choices=[{"delta": {}, "finish_reason": "stop"}])
