"""MLflow 3's `ChatAgent` types, as MLflow 3.17's `mlflow/types/agent.py` (pydantic models, as
there), with the pieces of `mlflow/types/chat.py` they use (`ToolCall`, `Function`,
`ChatUsage`)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

__all__ = [
    "ChatAgentChunk",
    "ChatAgentMessage",
    "ChatAgentRequest",
    "ChatAgentResponse",
    "ChatContext",
    "ChatUsage",
    "Function",
    "ToolCall",
]


class Function(BaseModel):
    name: str | None = None
    arguments: str | None = None

    def to_tool_call(self, id: str | None = None) -> ToolCall:
        if id is None:
            id = str(uuid4())
        return ToolCall(id=id, type="function", function=self)


class ToolCall(BaseModel):
    id: str
    type: str = Field(default="function")
    function: Function
    # Gemini thinking-mode models return a thought_signature with each function call that must
    # be echoed back in subsequent turns.
    thought_signature: str | None = Field(default=None)

    @model_serializer(mode="wrap")
    def _serialize(self, handler):
        data = handler(self)
        if data.get("thought_signature") is None:
            data.pop("thought_signature", None)
        return data


class PromptTokensDetails(BaseModel):
    model_config = {"extra": "allow"}

    cached_tokens: int | None = None


class ChatUsage(BaseModel):
    model_config = {"extra": "allow"}

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetails | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler):
        data = handler(self)
        if data.get("prompt_tokens_details") is None:
            data.pop("prompt_tokens_details", None)
        return data


class ChatAgentMessage(BaseModel):
    """A message in a ChatAgent request or response: `role`, `content` (None only with
    `tool_calls`), `name`, `id` (required in a response or chunk), `tool_calls`, `tool_call_id`
    and `attachments`. A tool message needs `name` and `tool_call_id`."""

    role: str
    content: str | None = None
    name: str | None = None
    id: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    attachments: dict[str, str] | None = None

    @model_validator(mode="after")
    def check_content_and_tool_calls(self):
        """Ensure at least one of 'content' or 'tool_calls' is set."""
        if self.content is None and self.tool_calls is None:
            raise ValueError("Either 'content' or 'tool_calls' must be provided.")
        return self

    @model_validator(mode="after")
    def check_tool_messages(self):
        """Ensure that the 'name' and 'tool_call_id' fields are set for tool messages."""
        if self.role == "tool" and (not self.name or not self.tool_call_id):
            raise ValueError("Both 'name' and 'tool_call_id' must be provided for tool messages.")
        return self


class ChatContext(BaseModel):
    """Context of a ChatAgent or ResponsesAgent request: `conversation_id`, `user_id`."""

    conversation_id: str | None = None
    user_id: str | None = None


class ChatAgentRequest(BaseModel):
    """A ChatAgent request: `messages`, `context`, `custom_inputs`, `stream`."""

    messages: list[ChatAgentMessage]
    context: ChatContext | None = None
    custom_inputs: dict[str, Any] | None = None
    stream: bool | None = False


class ChatAgentResponse(BaseModel):
    """A ChatAgent answer: `messages` (each with a unique `id`), `finish_reason`,
    `custom_outputs`, `usage`."""

    model_config = ConfigDict(validate_assignment=True)
    messages: list[ChatAgentMessage]
    finish_reason: str | None = None
    custom_outputs: dict[str, Any] | None = None
    usage: ChatUsage | None = None

    @model_validator(mode="after")
    def check_message_ids(self):
        """Ensure that all messages have an ID and it is unique."""
        message_ids = [msg.id for msg in self.messages]
        if any(msg_id is None for msg_id in message_ids):
            raise ValueError(
                "All ChatAgentMessage objects in field `messages` must have an ID. You can use "
                "`str(uuid.uuid4())` to generate a unique ID."
            )
        if len(message_ids) != len(set(message_ids)):
            raise ValueError(
                "All ChatAgentMessage objects in field `messages` must have unique IDs. "
                "You can use `str(uuid.uuid4())` to generate a unique ID."
            )
        return self


class ChatAgentChunk(BaseModel):
    """One chunk of a ChatAgent stream: `delta` (a ChatAgentMessage with an `id`; chunks of one
    message share it), `finish_reason`, `custom_outputs`, `usage`."""

    model_config = ConfigDict(validate_assignment=True)
    delta: ChatAgentMessage
    finish_reason: str | None = None
    custom_outputs: dict[str, Any] | None = None
    usage: ChatUsage | None = None

    @model_validator(mode="after")
    def check_message_id(self):
        """Ensure that the message ID is set."""
        if self.delta.id is None:
            raise ValueError(
                "The field `delta` of ChatAgentChunk must contain a ChatAgentMessage object with an"
                " ID. If this chunk contains partial content, it should have the same ID as other "
                " chunks in the same message. You can use `str(uuid.uuid4())` to generate a "
                "unique ID."
            )
        return self


CHAT_AGENT_INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "Hello!"}]}
