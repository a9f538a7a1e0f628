"""The interfaces a model may implement, and what differs between them: `ChatModel`,
`ResponsesAgent` and `ChatAgent` (MLflow's three). Each says how a request dict becomes the
arguments of `predict`, how an answer or a streamed item is checked and written as a dict, its
signature and default input example. The worker, registration and the gateway's checks all ask
the version's interface here, so a fact about one interface is stated once.

Django-free: the model worker imports it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic

from chatmodels.agents.base import ChatAgent, ResponsesAgent
from chatmodels.agents.chat_agent_types import (
    CHAT_AGENT_INPUT_EXAMPLE,
    ChatAgentChunk,
    ChatAgentRequest,
    ChatAgentResponse,
)
from chatmodels.agents.responses import (
    RESPONSES_AGENT_INPUT_EXAMPLE,
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)
from chatmodels.base import ChatModel
from chatmodels.exceptions import ChatDataError, InvalidModelOutput, short_repr
from chatmodels.signature import chat_signature

CHAT_MODEL = "chat_model"
RESPONSES_AGENT = "responses_agent"
CHAT_AGENT = "chat_agent"
# What people read: the admin, the API's version objects.
LABELS = {CHAT_MODEL: "ChatModel", RESPONSES_AGENT: "ResponsesAgent", CHAT_AGENT: "ChatAgent"}


def pydantic_error(error: pydantic.ValidationError, prefix: str = "") -> ChatDataError:
    """A pydantic validation error as a ChatDataError naming the first field that is wrong."""
    first = error.errors()[0]
    # Union branches and validators show in `loc` as "function-after[check_role(), Message]":
    # not fields.
    fields = [p for p in first["loc"] if isinstance(p, int) or not ("[" in p or "(" in p)]
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in fields).lstrip(".")
    if prefix:
        path = f"{prefix}.{path}" if path and not path.startswith("[") else f"{prefix}{path}"
    message = first["msg"].removeprefix("Value error, ")
    return ChatDataError(f"{path}: {message}" if path else message, param=path or None)


@dataclass(frozen=True)
class AgentInterface:
    """An MLflow agent interface: its request, answer and stream item types (pydantic)."""

    name: str
    base: type
    request_type: type[pydantic.BaseModel]
    answer_type: type[pydantic.BaseModel]
    chunk_type: type[pydantic.BaseModel]
    default_input_example: dict[str, Any]
    # The request, validated, as `predict`'s positional arguments.
    arguments: Callable[[pydantic.BaseModel], tuple]

    def request(self, data: Any) -> pydantic.BaseModel:
        """A request dict as the interface's request (ChatDataError naming the field)."""
        if not isinstance(data, dict):
            raise ChatDataError(
                f"expected a JSON object ({self.request_type.__name__}), got {type(data).__name__}",
                param=None,
            )
        try:
            return self.request_type(**data)
        except pydantic.ValidationError as error:
            raise pydantic_error(error) from None

    def call_arguments(self, data: dict[str, Any]) -> tuple:
        return self.arguments(self.request(data))

    def check_answer(self, value: Any, *, source: str = "predict") -> dict[str, Any]:
        return _checked(self.answer_type, value, source=source, verb="returned")

    def check_chunk(self, value: Any, *, source: str = "predict_stream") -> dict[str, Any]:
        return _checked(self.chunk_type, value, source=source, verb="yielded")

    def signature(self) -> dict[str, Any]:
        """`{"inputs": <JSON Schema of the request>, "outputs": <of the answer>}`."""
        return {
            "inputs": copy.deepcopy(_schema(self.request_type)),
            "outputs": copy.deepcopy(_schema(self.answer_type)),
        }

    def input_example(self, example: Any) -> dict[str, Any]:
        """An input example (a request dict or the request object) as a checked dict."""
        if isinstance(example, pydantic.BaseModel):
            example = example.model_dump(exclude_none=True)
        request = self.request(copy.deepcopy(example))
        if getattr(request, "stream", None):
            raise ChatDataError(
                "input example: stream must be false (registration calls predict)", param="stream"
            )
        return dict(example)


@dataclass(frozen=True)
class AgentRequest:
    """An agent's request as the gateway carries it to the worker: its dict, checked, in the
    agent's own format, and whether the answer streams."""

    data: dict[str, Any]
    stream: bool

    def to_dict(self) -> dict[str, Any]:
        return self.data


_SCHEMAS: dict[type, dict[str, Any]] = {}


def _schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The type's JSON Schema (pydantic's), its `$defs` written in place, so that the stored
    signature reads on its own, nested fields and all (none of these types is recursive)."""
    if model not in _SCHEMAS:
        schema = model.model_json_schema()
        definitions = schema.pop("$defs", {})
        _SCHEMAS[model] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            **_inlined(schema, definitions),
        }
    return _SCHEMAS[model]


def _inlined(value: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        reference = value.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            rest = {key: item for key, item in value.items() if key != "$ref"}
            target = _inlined(definitions[reference.removeprefix("#/$defs/")], definitions)
            return {**target, **_inlined(rest, definitions)}
        return {key: _inlined(item, definitions) for key, item in value.items()}
    if isinstance(value, list):
        return [_inlined(item, definitions) for item in value]
    return value


def _checked(model: type[pydantic.BaseModel], value: Any, *, source: str, verb: str) -> dict:
    """As MLflow's agent wrappers: an instance is dumped without its None fields; a dict must
    validate as the type and is kept as it is. Anything else is InvalidModelOutput."""
    name = model.__name__
    if isinstance(value, model):
        data = value.model_dump(exclude_none=True)
    elif isinstance(value, dict):
        data = value
    else:
        raise InvalidModelOutput(
            f"{source} {verb} {type(value).__name__}, not {name}: {short_repr(value, 200)}"
        )
    try:
        model.model_validate(data)
    except pydantic.ValidationError as error:
        raise InvalidModelOutput(
            f"{source} {verb} an invalid {name}: {pydantic_error(error).message}"
        ) from None
    except RecursionError:
        raise InvalidModelOutput(f"{source} {verb} a {name} nested too deeply") from None
    return data


def _chat_agent_arguments(request: pydantic.BaseModel) -> tuple:
    assert isinstance(request, ChatAgentRequest)
    return request.messages, request.context, request.custom_inputs


RESPONSES_AGENT_INTERFACE = AgentInterface(
    name=RESPONSES_AGENT,
    base=ResponsesAgent,
    request_type=ResponsesAgentRequest,
    answer_type=ResponsesAgentResponse,
    chunk_type=ResponsesAgentStreamEvent,
    default_input_example=RESPONSES_AGENT_INPUT_EXAMPLE,
    arguments=lambda request: (request,),
)
CHAT_AGENT_INTERFACE = AgentInterface(
    name=CHAT_AGENT,
    base=ChatAgent,
    request_type=ChatAgentRequest,
    answer_type=ChatAgentResponse,
    chunk_type=ChatAgentChunk,
    default_input_example=CHAT_AGENT_INPUT_EXAMPLE,
    arguments=_chat_agent_arguments,
)
AGENTS = {RESPONSES_AGENT: RESPONSES_AGENT_INTERFACE, CHAT_AGENT: CHAT_AGENT_INTERFACE}
# The worker protocol's `type` of each agent answer and stream item → its interface.
BY_TYPE_NAME: dict[str, tuple[AgentInterface, bool]] = {
    **{i.answer_type.__name__: (i, False) for i in AGENTS.values()},
    **{i.chunk_type.__name__: (i, True) for i in AGENTS.values()},
}
MODEL_BASES = (ChatModel, ResponsesAgent, ChatAgent)


def generated_signature(interface: str) -> dict[str, Any]:
    """The signature every model of `interface` gets."""
    agent = AGENTS.get(interface)
    return chat_signature() if agent is None else agent.signature()


# What the request and the answer of each interface are, for people.
FORMATS = {
    CHAT_MODEL: ("an OpenAI chat-completions request", "chat.completion"),
    RESPONSES_AGENT: ("a ResponsesAgentRequest", "ResponsesAgentResponse"),
    CHAT_AGENT: ("a ChatAgentRequest", "ChatAgentResponse"),
}


def interface_name(model: object) -> str:
    """`chat_model`, `responses_agent` or `chat_agent` for a model instance or class."""
    cls = model if isinstance(model, type) else type(model)
    if issubclass(cls, ResponsesAgent):
        return RESPONSES_AGENT
    if issubclass(cls, ChatAgent):
        return CHAT_AGENT
    return CHAT_MODEL


__all__ = [
    "AGENTS",
    "CHAT_AGENT",
    "CHAT_MODEL",
    "MODEL_BASES",
    "RESPONSES_AGENT",
    "AgentInterface",
    "AgentRequest",
    "interface_name",
    "pydantic_error",
]
