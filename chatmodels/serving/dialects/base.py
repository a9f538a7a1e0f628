"""What a chat dialect is: how one API reads its request as a `ChatRequest` and writes the answer.

The pipeline (`serving/pipeline.py`) is the same for every dialect; only these differ. The dialects:
`chat_completions.py` (the OpenAI chat-completions format, as is) and the Responses API
(`responses_request.py` reads a request, `responses_answer.py` writes the answer).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from chatmodels.exceptions import ChatModelsError
from chatmodels.interfaces import AgentRequest
from chatmodels.serving import strict_json
from chatmodels.types import ChatRequest

KEEP_ALIVE_EVENT = b": keep-alive\n\n"


@dataclass(frozen=True)
class ParsedChat:
    request: ChatRequest | AgentRequest  # an agent's request is in its own format
    include_usage: bool  # a stream ends with a usage chunk (`usage` null if the model gave none)


class ChatDialect(Protocol):
    """How one API speaks chat: its request read as a `ChatRequest`, the answer written back.

    The pipeline (`answer_chat`) is the same for every dialect; only these differ.
    """

    def parse(self, body: dict[str, Any]) -> ParsedChat:
        """The chat request (400 naming the field the client sent when it is wrong)."""

    def completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer to a non-stream request, from the `chat.completion` dict."""

    def begin(self) -> Iterator[bytes]:
        """The SSE events that open a stream, before its first chunk."""

    def event(self, chunk: dict[str, Any] | None) -> Iterator[bytes]:
        """The SSE events of one `chat.completion.chunk` dict (KEEP_ALIVE, None, is passed on
        as KEEP_ALIVE_EVENT)."""

    def end(self) -> Iterator[bytes]:
        """The SSE events that end a stream that went well."""

    def failed(self, error: ChatModelsError) -> Iterator[bytes]:
        """The SSE events that end a stream that failed after it started."""

    def cut(self, error: ChatModelsError) -> Iterator[bytes]:
        """The SSE events that end a stream the server cut (it is shutting down)."""
        return self.failed(error)


def sse(data: dict[str, Any], *, event: str | None = None) -> bytes:
    """One server-sent event carrying `data` as strict JSON (with an `event:` line if given);
    InvalidModelOutput if what the model gave cannot be (the stream then ends on an error)."""
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + strict_json.dumps_model_output(data) + b"\n\n"
