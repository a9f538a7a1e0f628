"""The OpenAI chat-completions format, as is: `/api/models/<name>/invocations`,
`/v1/chat/completions` and the admin playground speak it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chatmodels.exceptions import ChatModelsError, InvalidRequest
from chatmodels.serving import errors, runtime
from chatmodels.serving.dialects.base import KEEP_ALIVE_EVENT, ParsedChat, sse
from chatmodels.types import ChatRequest


class ChatCompletionsDialect:
    """The OpenAI chat-completions format, as is (invocations, /v1/chat/completions)."""

    def parse(self, body: dict[str, Any]) -> ParsedChat:
        request = ChatRequest.from_dict(body)
        # stream_options is checked even without stream: a bad one is a 400 either way.
        return ParsedChat(request, _include_usage(body) and request.stream)

    def completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        return completion

    def begin(self) -> Iterator[bytes]:
        return iter(())

    def event(self, chunk: dict[str, Any] | None) -> Iterator[bytes]:
        yield KEEP_ALIVE_EVENT if chunk is runtime.KEEP_ALIVE else sse(chunk)

    def end(self) -> Iterator[bytes]:
        yield b"data: [DONE]\n\n"

    def failed(self, error: ChatModelsError) -> Iterator[bytes]:
        # No [DONE]: the OpenAI SDKs raise APIError on an `error` event.
        yield sse(errors.error_body(error))


CHAT_COMPLETIONS = ChatCompletionsDialect()
# `/api/models/<name>/invocations`: the same for a ChatModel; an agent answers it in its own
# format (`agents.OwnFormatDialect`), as `mlflow models serve` does.
INVOCATIONS = ChatCompletionsDialect()


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("stream_options: expected an object", param="stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise InvalidRequest(
            "stream_options.include_usage: expected a boolean", param="stream_options.include_usage"
        )
    return include
