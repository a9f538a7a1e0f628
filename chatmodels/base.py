"""The class model authors subclass, and the context handed to it."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp
    import urllib3

    from chatmodels.types import ChatChunk, ChatMessage, ChatParams, ChatResponse


@dataclass
class ModelContext:
    """What a loaded model may use: local paths of its artifacts, its configuration, and pooled
    HTTP clients for calling an upstream (`chatmodels.upstream`)."""

    artifacts: dict[str, str] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)
    _http: Any = field(default=None, init=False, repr=False, compare=False)
    _http_sync: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def http(self) -> aiohttp.ClientSession:
        """The worker's pooled `aiohttp.ClientSession`, for async methods (made on the worker's
        event loop at first use; `model_config` `timeout`/`connect_timeout` set its timeouts)."""
        if self._http is None or self._http.closed:
            from chatmodels.upstream import new_session

            self._http = new_session(self.model_config)
        return self._http

    @property
    def http_sync(self) -> urllib3.PoolManager:
        """The pooled sync twin of `http` (a `urllib3.PoolManager`), for sync methods."""
        if self._http_sync is None:
            from chatmodels.upstream import new_pool

            self._http_sync = new_pool(self.model_config)
        return self._http_sync


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
