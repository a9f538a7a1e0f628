"""MLflow 3's agent interfaces: `ResponsesAgent` and `ChatAgent`, method for method as MLflow
3.17's `mlflow.pyfunc.ResponsesAgent` / `mlflow.pyfunc.ChatAgent`.

As in MLflow, `predict` and `predict_stream` may also be called with one dict in the request's
format (handy in tests: `agent.predict({"input": [...]})`); it is validated and converted first.
Either may be async (`async def predict`, `async def predict_stream` with `yield`).
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import pydantic

from chatmodels.agents import responses
from chatmodels.agents.chat_agent_types import (
    ChatAgentChunk,
    ChatAgentMessage,
    ChatAgentRequest,
    ChatAgentResponse,
    ChatContext,
)
from chatmodels.agents.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)
from chatmodels.agents.responses_helpers import Message, OutputItem
from chatmodels.base import ModelContext


def _dict_request(
    method: Callable, request_model: type[pydantic.BaseModel], error: str, *, unpack: bool
) -> Callable:
    """`method`, also callable with one dict in `request_model`'s format (MLflow's
    `wrap_non_list_predict_pydantic`): sync, coroutine and async generator methods stay so."""

    def arguments(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if len(args) != 1 or kwargs or not isinstance(args[0], dict):
            return args, kwargs
        try:
            request = request_model(**args[0])
        except pydantic.ValidationError as validation_error:
            raise ValueError(f"{error} Pydantic validation error: {validation_error}") from None
        if not unpack:
            return (request,), {}
        names = inspect.signature(method).parameters.keys() - {"self"}
        return (), {name: getattr(request, name) for name in names}

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def async_stream(self, *args, **kwargs):
            args, kwargs = arguments(args, kwargs)
            async for item in method(self, *args, **kwargs):
                yield item

        wrapper: Callable = async_stream
    elif inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def coroutine(self, *args, **kwargs):
            args, kwargs = arguments(args, kwargs)
            return await method(self, *args, **kwargs)

        wrapper = coroutine
    else:

        @functools.wraps(method)
        def plain(self, *args, **kwargs):
            args, kwargs = arguments(args, kwargs)
            return method(self, *args, **kwargs)

        wrapper = plain
    wrapper._takes_dict_request = True  # type: ignore[attr-defined]
    return wrapper


def _wrap_predict_methods(
    cls: type, request_model: type[pydantic.BaseModel], error: str, *, unpack: bool
) -> None:
    for name in ("predict", "predict_stream"):
        method = cls.__dict__.get(name)
        if callable(method) and not getattr(method, "_takes_dict_request", False):
            setattr(cls, name, _dict_request(method, request_model, error, unpack=unpack))


class _Agent(abc.ABC):  # noqa: B024 - its subclasses declare predict
    """What both agent interfaces share with ChatModel: `load_context` and streaming support."""

    def load_context(self, context: ModelContext) -> None:  # noqa: B027 - optional hook
        """Runs once each time the model is loaded (at registration and in each worker)."""

    @classmethod
    def supports_streaming(cls) -> bool:
        """Whether the class overrides `predict_stream` (else a stream is `predict`'s answer)."""
        base = next(c for c in cls.__mro__ if c in (ResponsesAgent, ChatAgent))
        return inspect.getattr_static(cls, "predict_stream") is not base.__dict__["predict_stream"]


class ResponsesAgent(_Agent):
    """An agent answering in the OpenAI Responses format: `predict(request)` returns a
    `ResponsesAgentResponse` (its `output` items), `predict_stream(request)` yields
    `ResponsesAgentStreamEvent`s (text deltas with `create_text_delta`, each finished item as a
    `response.output_item.done` event). The static helpers build the items."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _wrap_predict_methods(
            cls,
            ResponsesAgentRequest,
            "Invalid dictionary input for a ResponsesAgent. "
            "Expected a dictionary with the ResponsesRequest schema.",
            unpack=False,
        )

    @staticmethod
    def responses_agent_output_reducer(
        chunks: list[ResponsesAgentStreamEvent | dict[str, Any]],
    ) -> dict[str, Any]:
        return responses.responses_agent_output_reducer(chunks)

    @abc.abstractmethod
    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        """Given a ResponsesAgentRequest, returns a ResponsesAgentResponse."""

    def predict_stream(
        self, request: ResponsesAgentRequest
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        """Given a ResponsesAgentRequest, yields ResponsesAgentStreamEvents. Optional."""
        raise NotImplementedError(
            "Streaming implementation not provided. Please override the "
            "`predict_stream` method on your model to generate streaming predictions"
        )

    @staticmethod
    def create_text_delta(delta: str, item_id: str) -> dict[str, Any]:
        """A `response.output_text.delta` event."""
        return responses.create_text_delta(delta, item_id)

    @staticmethod
    def create_annotation_added(
        item_id: str, annotation: dict[str, Any], annotation_index: int | None = 0
    ) -> dict[str, Any]:
        """A `response.output_text.annotation.added` event."""
        return responses.create_annotation_added(item_id, annotation, annotation_index)

    @staticmethod
    def create_text_output_item(
        text: str,
        id: str,
        annotations: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """An assistant `message` output item holding one `output_text`."""
        return responses.create_text_output_item(text, id, annotations)

    @staticmethod
    def create_reasoning_item(id: str, reasoning_text: str) -> dict[str, Any]:
        """A `reasoning` output item with one summary text."""
        return responses.create_reasoning_item(id, reasoning_text)

    @staticmethod
    def create_function_call_item(
        id: str,
        call_id: str,
        name: str,
        arguments: str,
    ) -> dict[str, Any]:
        """A `function_call` output item."""
        return responses.create_function_call_item(id, call_id, name, arguments)

    @staticmethod
    def create_function_call_output_item(call_id: str, output: str) -> dict[str, Any]:
        """A `function_call_output` item: what a function call returned."""
        return responses.create_function_call_output_item(call_id, output)

    @staticmethod
    def _responses_to_cc(message: dict[str, Any]) -> list[dict[str, Any]]:
        """A Responses item as chat-completions messages."""
        return responses.responses_to_cc(message)

    @staticmethod
    def prep_msgs_for_cc_llm(
        responses_input: Sequence[dict[str, Any] | Message | OutputItem],
    ) -> list[dict[str, Any]]:
        """Responses input items as chat-completions message dicts."""
        return responses.to_chat_completions_input(responses_input)

    @staticmethod
    def output_to_responses_items_stream(
        chunks: Iterator[dict[str, Any]], aggregator: list[dict[str, Any]] | None = None
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        """Chat-completion chunk dicts (or LangChain messages) as ResponsesAgentStreamEvents;
        `aggregator`, if given, is extended with the finished output items."""
        yield from responses.output_to_responses_items_stream(chunks, aggregator)


class ChatAgent(_Agent):
    """An agent answering with a list of messages (its intermediate steps included):
    `predict(messages, context, custom_inputs)` returns a `ChatAgentResponse`,
    `predict_stream(...)` yields `ChatAgentChunk`s (chunks of one message share its `id`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _wrap_predict_methods(
            cls,
            ChatAgentRequest,
            "Invalid dictionary input for a ChatAgent. Expected a dictionary with the "
            "ChatAgentRequest schema.",
            unpack=True,
        )

    def _convert_messages_to_dict(self, messages: list[ChatAgentMessage]) -> list[dict[str, Any]]:
        return [m.model_dump(exclude_none=True) for m in messages]

    @abc.abstractmethod
    def predict(
        self,
        messages: list[ChatAgentMessage],
        context: ChatContext | None = None,
        custom_inputs: dict[str, Any] | None = None,
    ) -> ChatAgentResponse:
        """Given the chat history, returns a ChatAgentResponse."""

    def predict_stream(
        self,
        messages: list[ChatAgentMessage],
        context: ChatContext | None = None,
        custom_inputs: dict[str, Any] | None = None,
    ) -> Generator[ChatAgentChunk, None, None]:
        """Given the chat history, yields ChatAgentChunks. Optional."""
        raise NotImplementedError(
            "Streaming implementation not provided. Please override the "
            "`predict_stream` method on your model to generate streaming predictions"
        )
