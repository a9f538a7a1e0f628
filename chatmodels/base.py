"""The class model authors subclass, and the context handed to it."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatmodels.types import ChatChunk, ChatMessage, ChatParams, ChatResponse


@dataclass
class ModelContext:
    """What a loaded model may use: local paths of its artifacts and its configuration."""

    artifacts: dict[str, str] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)


class ChatModel(abc.ABC):
    """Subclass this and implement `predict`; `predict_stream` and `load_context` are optional.

    As in MLflow >= 2.20, `predict` and `predict_stream` may leave out `context`:
    `def predict(self, messages, params)` is detected once when the model is loaded.

    Each of them may be async (`async def predict`, `async def predict_stream` with `yield`,
    `async def load_context`): the server runs those on its per-process event loop, so a model
    that awaits an upstream LLM holds no thread while it waits. Sync ones run on a thread.

    The instance is serialized at registration *before* `load_context` runs, so keep heavy or
    unpicklable state (clients, weights) out of `__init__` and create it in `load_context`.
    """

    def load_context(self, context: ModelContext) -> None:  # noqa: B027 - optional hook
        """Runs once each time the model is loaded (at registration and in each server process)."""

    @abc.abstractmethod
    def predict(
        self, context: ModelContext, messages: list[ChatMessage], params: ChatParams
    ) -> ChatResponse:
        """Answer a chat request."""

    def predict_stream(
        self, context: ModelContext, messages: list[ChatMessage], params: ChatParams
    ) -> Iterator[ChatChunk]:
        """Answer a chat request chunk by chunk. Optional: without it, streams send one chunk."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict_stream")

    @classmethod
    def supports_streaming(cls) -> bool:
        return cls.predict_stream is not ChatModel.predict_stream
