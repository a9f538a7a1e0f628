"""Chat dataclasses in the OpenAI chat-completions format, field for field as MLflow's llm types.

Nested dicts become nested types on construction; `validate()` re-checks a whole tree (authors
may mutate objects after building them); every failure raises `ChatDataError` naming the field
path. `to_dict()` returns plain containers without `None` values. `from_dict` ignores unknown keys.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from chatmodels.exceptions import ChatDataError

__all__ = [
    "AudioContentPart",
    "ChatChoice",
    "ChatChoiceDelta",
    "ChatChoiceLogProbs",
    "ChatChunk",
    "ChatChunkChoice",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "ChatParams",
    "ChatRequest",
    "ChatResponse",
    "FunctionToolCallArguments",
    "FunctionToolDefinition",
    "ImageContentPart",
    "ImageUrl",
    "InputAudio",
    "ParamProperty",
    "TextContentPart",
    "TokenLogProb",
    "TokenUsageStats",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinition",
    "ToolParamsSchema",
    "TopTokenLogProb",
]

# Field kinds. A nested type is given as the class itself, a list of it as [Class].
STR, INT, NUMBER, BOOL, DICT, ANY, STOP, CONTENT = (
    "str",
    "int",
    "number",
    "bool",
    "dict",
    "any",
    "stop",
    "content",
)
_EXPECTED = {
    STR: "str",
    INT: "int",
    NUMBER: "number",
    BOOL: "bool",
    DICT: "object (dict)",
    STOP: "str or list of str",
    CONTENT: "str or list of content parts",
}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _fail(path: str, expected: str, value: Any) -> ChatDataError:
    return ChatDataError(f"{path}: expected {expected}, got {_describe(value)}", param=path)


def _check_scalar(kind: str, value: Any, path: str) -> None:
    if kind == STR:
        ok = isinstance(value, str)
    elif kind == INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == NUMBER:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind == BOOL:
        ok = isinstance(value, bool)
    elif kind == DICT:
        ok = isinstance(value, dict)
    elif kind == STOP:
        ok = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        )
    else:  # ANY
        ok = True
    if not ok:
        raise _fail(path, _EXPECTED[kind], value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# The common case of each plain kind, checked without building the field's path.
_FAST_CHECKS = {
    STR: lambda value: isinstance(value, str),
    INT: _is_int,
    NUMBER: _is_number,
    BOOL: lambda value: isinstance(value, bool),
    DICT: lambda value: isinstance(value, dict),
    ANY: lambda value: True,
}


class _Layout:
    """What `from_dict`, `_check` and `to_dict` need to know about a type, worked out once."""

    def __init__(self, cls: type) -> None:
        specs = fields(cls)  # fields() leaves out ClassVar pseudo-fields
        self.names = tuple(spec.name for spec in specs)
        self.known = frozenset(self.names)
        # Plain defaults are immutable (dataclasses demand a factory otherwise): safe to share.
        self.defaults = {
            spec.name: None if spec.default is MISSING else spec.default for spec in specs
        }
        self.factories = tuple(
            (spec.name, spec.default_factory)
            for spec in specs
            if spec.default_factory is not MISSING
        )
        # Required fields with no default: from_dict refuses a dict without them.
        marked_required = {name for name, _kind, required in cls._fields if required}
        self.required = tuple(
            spec.name
            for spec in specs
            if spec.name in marked_required
            and spec.default is MISSING
            and spec.default_factory is MISSING
        )
        # (name, kind, required, fast check for plain kinds or None)
        self.checks = tuple(
            (name, kind, required, _FAST_CHECKS.get(kind) if isinstance(kind, str) else None)
            for name, kind, required in cls._fields
        )
        self.nested = tuple(
            (name, kind) for name, kind, _required in cls._fields if not _is_plain(kind)
        )


def _is_plain(kind: Any) -> bool:
    return isinstance(kind, str) and kind != CONTENT


class _ChatData:
    """Small validating base: subclasses declare `_fields` as (name, kind, required) triples."""

    _fields: ClassVar[tuple[tuple[str, Any, bool], ...]] = ()

    def __post_init__(self) -> None:
        self._convert("")
        self._check("", deep=False)

    @classmethod
    def _layout(cls) -> _Layout:
        layout = cls.__dict__.get("_layout_cache")
        if layout is None:
            layout = _Layout(cls)
            cls._layout_cache = layout
        return layout

    # -- conversion of nested dicts -------------------------------------------------------
    def _convert(self, path: str) -> None:
        values = self.__dict__
        for name, kind in self._layout().nested:
            value = values[name]
            if value is None:
                continue
            converted = _convert_value(kind, value, _join(path, name))
            if converted is not value:
                values[name] = converted

    # -- validation -----------------------------------------------------------------------
    def validate(self, path: str = "") -> None:
        """Re-check every field of this object and of everything nested in it."""
        self._check(path)

    def _check(self, path: str, *, deep: bool = True) -> None:
        # Construction checks nested objects shallowly: each was checked when it was built.
        # `validate()` goes deep, for objects changed after they were built.
        values = self.__dict__
        for name, kind, required, fast_check in self._layout().checks:
            value = values[name]
            if value is None:
                if required:
                    field_path = _join(path, name)
                    raise ChatDataError(f"{field_path}: is required", param=field_path)
                continue
            if fast_check is not None and fast_check(value):
                continue
            _check_value(kind, value, _join(path, name), deep)
        self._check_extra(path)

    def _check_extra(self, path: str) -> None:
        """Rules beyond types (ranges, non-empty lists); overridden where needed."""

    # -- dict round trip ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, path: str = ""):
        """Build from a dict; keys this type does not know are ignored (forward compatibility)."""
        if not isinstance(data, dict):
            raise _fail(path or cls.__name__, "object (dict)", data)
        layout = cls._layout()
        for name in layout.required:
            if name not in data:
                field_path = _join(path, name)
                raise ChatDataError(f"{field_path}: is required", param=field_path)
        values = layout.defaults.copy()
        known = layout.known
        for key, value in data.items():
            if key in known:
                values[key] = value
        for name, factory in layout.factories:
            if name not in data:
                values[name] = factory()
        instance = cls.__new__(cls)
        instance.__dict__.update(values)
        instance._convert(path)
        instance._check(path, deep=False)
        return instance

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists, with `None` values left out at every level."""
        values = self.__dict__
        result = {}
        for name in self._layout().names:
            value = values[name]
            if value is not None:
                result[name] = _plain(value)
        return result


def _plain(value: Any) -> Any:
    if isinstance(value, _ChatData):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    return value


def _convert_value(kind: Any, value: Any, path: str) -> Any:
    if isinstance(kind, list):
        item_type = kind[0]
        if not isinstance(value, list):
            return value  # reported by _check_value
        if all(isinstance(item, item_type) for item in value):
            return value
        return [
            item_type.from_dict(item, f"{path}[{i}]") if isinstance(item, dict) else item
            for i, item in enumerate(value)
        ]
    if isinstance(kind, type):
        if isinstance(value, dict):
            return kind.from_dict(value, path)
        return value
    if kind == CONTENT and isinstance(value, list):
        return [_content_part(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def _check_value(kind: Any, value: Any, path: str, deep: bool = True) -> None:
    if isinstance(kind, list):
        item_type = kind[0]
        if not isinstance(value, list):
            raise _fail(path, f"list of {item_type.__name__}", value)
        for i, item in enumerate(value):
            if not isinstance(item, item_type):
                raise _fail(f"{path}[{i}]", item_type.__name__, item)
            if deep:
                item._check(f"{path}[{i}]")
    elif isinstance(kind, type):
        if not isinstance(value, kind):
            raise _fail(path, kind.__name__, value)
        if deep:
            value._check(path)
    elif kind == CONTENT:
        if isinstance(value, str):
            return
        if not isinstance(value, list):
            raise _fail(path, _EXPECTED[CONTENT], value)
        for i, part in enumerate(value):
            if not isinstance(part, _CONTENT_PART_TYPES):
                raise _fail(f"{path}[{i}]", "content part (text, image_url or input_audio)", part)
            if deep:
                part._check(f"{path}[{i}]")
    else:
        _check_scalar(kind, value, path)


def _content_part(item: Any, path: str) -> Any:
    if not isinstance(item, dict):
        return item
    part_type = item.get("type")
    part_class = _CONTENT_PARTS_BY_TYPE.get(part_type)
    if part_class is None:
        raise ChatDataError(
            f"{path}.type: expected one of 'text', 'image_url', 'input_audio', got {part_type!r}",
            param=f"{path}.type",
        )
    return part_class.from_dict(item, path)


# ---------------------------------------------------------------------------------------------
# Content parts


@dataclass
class TextContentPart(_ChatData):
    text: str
    type: str = "text"
    _fields = (("text", STR, True), ("type", STR, True))


@dataclass
class ImageUrl(_ChatData):
    url: str
    detail: str | None = None
    _fields = (("url", STR, True), ("detail", STR, False))


@dataclass
class ImageContentPart(_ChatData):
    image_url: ImageUrl
    type: str = "image_url"
    _fields = (("image_url", ImageUrl, True), ("type", STR, True))


@dataclass
class InputAudio(_ChatData):
    data: str
    format: str
    _fields = (("data", STR, True), ("format", STR, True))


@dataclass
class AudioContentPart(_ChatData):
    input_audio: InputAudio
    type: str = "input_audio"
    _fields = (("input_audio", InputAudio, True), ("type", STR, True))


_CONTENT_PARTS_BY_TYPE = {
    "text": TextContentPart,
    "image_url": ImageContentPart,
    "input_audio": AudioContentPart,
}
_CONTENT_PART_TYPES = tuple(_CONTENT_PARTS_BY_TYPE.values())


# ---------------------------------------------------------------------------------------------
# Tools


@dataclass
class FunctionToolCallArguments(_ChatData):
    """The function a tool call invokes: its name and its JSON-encoded arguments."""

    name: str
    arguments: str
    _fields = (("name", STR, True), ("arguments", STR, True))


def _tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class ToolCall(_ChatData):
    function: FunctionToolCallArguments
    id: str = field(default_factory=_tool_call_id)
    type: str = "function"
    _fields = (
        ("function", FunctionToolCallArguments, True),
        ("id", STR, True),
        ("type", STR, True),
    )


@dataclass
class ToolCallDelta(_ChatData):
    """A tool call as it arrives in a stream: `index` always, the rest in pieces."""

    index: int
    id: str | None = None
    type: str | None = None
    function: dict[str, Any] | None = None
    _fields = (
        ("index", INT, True),
        ("id", STR, False),
        ("type", STR, False),
        ("function", DICT, False),
    )


@dataclass
class ParamProperty(_ChatData):
    """One parameter of a function tool, as JSON Schema."""

    type: str | None = None
    description: str | None = None
    enum: list[Any] | None = None
    items: dict[str, Any] | None = None
    _fields = (("type", STR, False), ("description", STR, False), ("items", DICT, False))

    def _check_extra(self, path: str) -> None:
        if self.enum is not None and not isinstance(self.enum, list):
            raise _fail(_join(path, "enum"), "list", self.enum)


@dataclass
class ToolParamsSchema(_ChatData):
    """JSON Schema of a function tool's parameters (kept as given: it is the author's schema)."""

    properties: dict[str, Any] = field(default_factory=dict)
    type: str = "object"
    required: list[str] | None = None
    additionalProperties: bool | None = None  # JSON Schema's own name
    _fields = (
        ("properties", DICT, True),
        ("type", STR, True),
        ("additionalProperties", BOOL, False),
    )

    def _check_extra(self, path: str) -> None:
        if self.required is not None and not (
            isinstance(self.required, list) and all(isinstance(r, str) for r in self.required)
        ):
            raise _fail(_join(path, "required"), "list of str", self.required)


@dataclass
class FunctionToolDefinition(_ChatData):
    name: str
    description: str | None = None
    parameters: ToolParamsSchema | None = None
    strict: bool = False
    _fields = (
        ("name", STR, True),
        ("description", STR, False),
        ("parameters", ToolParamsSchema, False),
        ("strict", BOOL, False),
    )

    def to_tool_definition(self) -> ToolDefinition:
        return ToolDefinition(function=self)


@dataclass
class ToolDefinition(_ChatData):
    function: FunctionToolDefinition
    type: str = "function"
    _fields = (("function", FunctionToolDefinition, True), ("type", STR, True))


# ---------------------------------------------------------------------------------------------
# Messages, parameters, requests


@dataclass
class ChatMessage(_ChatData):
    """A chat message. `content` is a string or a list of content parts."""

    role: str
    content: str | list[TextContentPart | ImageContentPart | AudioContentPart] | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    _fields = (
        ("role", STR, True),
        ("content", CONTENT, False),
        ("refusal", STR, False),
        ("name", STR, False),
        ("tool_calls", [ToolCall], False),
        ("tool_call_id", STR, False),
    )


@dataclass
class ChatParams(_ChatData):
    """Inference parameters, as in the OpenAI chat-completions request."""

    temperature: float = 1.0
    max_tokens: int | None = None
    stop: list[str] | None = None
    n: int = 1
    stream: bool = False
    top_p: float | None = None
    top_k: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    custom_inputs: dict[str, Any] | None = None
    tools: list[ToolDefinition] | None = None
    # The rest of the OpenAI request, for models that forward it upstream.
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    reasoning_effort: str | None = None
    max_completion_tokens: int | None = None
    # Every other key of the request (vendor parameters such as `min_p`), as the client sent it.
    extra: dict[str, Any] | None = None
    _fields = (
        ("temperature", NUMBER, False),
        ("max_tokens", INT, False),
        ("stop", STOP, False),
        ("n", INT, False),
        ("stream", BOOL, False),
        ("top_p", NUMBER, False),
        ("top_k", INT, False),
        ("frequency_penalty", NUMBER, False),
        ("presence_penalty", NUMBER, False),
        ("custom_inputs", DICT, False),
        ("tools", [ToolDefinition], False),
        ("tool_choice", ANY, False),
        ("parallel_tool_calls", BOOL, False),
        ("response_format", DICT, False),
        ("seed", INT, False),
        ("user", STR, False),
        ("metadata", DICT, False),
        ("logprobs", BOOL, False),
        ("top_logprobs", INT, False),
        ("logit_bias", DICT, False),
        ("reasoning_effort", STR, False),
        ("max_completion_tokens", INT, False),
        ("extra", DICT, False),
    )

    @classmethod
    def keys(cls) -> set[str]:
        """The names of the fields (as MLflow's `ChatParams.keys()`)."""
        return set(cls._layout().names)

    def _check_extra(self, path: str) -> None:
        if self.temperature is not None and self.temperature < 0:
            raise _fail(_join(path, "temperature"), "number >= 0", self.temperature)
        if self.n is not None and self.n < 1:
            raise _fail(_join(path, "n"), "int >= 1", self.n)
        if self.max_tokens is not None and self.max_tokens < 1:
            raise _fail(_join(path, "max_tokens"), "int >= 1", self.max_tokens)
        if self.max_completion_tokens is not None and self.max_completion_tokens < 1:
            raise _fail(
                _join(path, "max_completion_tokens"), "int >= 1", self.max_completion_tokens
            )
        if self.top_p is not None and not 0 <= self.top_p <= 1:
            raise _fail(_join(path, "top_p"), "number between 0 and 1", self.top_p)


_NULL_MEANS_DEFAULT = frozenset({"temperature", "n", "stream"})
# Request keys the server reads itself: not handed to the model in `ChatParams.extra`.
SERVER_KEYS = frozenset({"model", "stream_options"})


@dataclass
class ChatRequest(ChatParams):
    """A whole chat request: `messages` plus every `ChatParams` field."""

    messages: list[ChatMessage] = field(default_factory=list)
    _fields = (("messages", [ChatMessage], True), *ChatParams._fields)

    def _check_extra(self, path: str) -> None:
        if not self.messages:
            raise ChatDataError(
                f"{_join(path, 'messages')}: expected a non-empty list of messages, got []",
                param=_join(path, "messages"),
            )
        super()._check_extra(path)

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> ChatRequest:
        """Read an OpenAI request. Keys no field takes go to `extra` (vendor parameters), except
        `model` and `stream_options`, which the server itself reads.

        As in the OpenAI API, `null` for a parameter with a default means that default.
        """
        if isinstance(data, dict):
            if "messages" not in data:
                raise ChatDataError(f"{_join(path, 'messages')}: is required", param="messages")
            if any(data.get(name, 0) is None for name in _NULL_MEANS_DEFAULT):
                data = {
                    k: v for k, v in data.items() if not (v is None and k in _NULL_MEANS_DEFAULT)
                }
            known = cls._layout().known
            unknown = {
                key: value
                for key, value in data.items()
                if key not in known and key not in SERVER_KEYS
            }
            given = data.get("extra")
            if unknown and (given is None or isinstance(given, dict)):
                data = {**data, "extra": {**(given or {}), **unknown}}
        request = super().from_dict(data, path)
        if request.max_tokens is None and request.max_completion_tokens is not None:
            request.max_tokens = request.max_completion_tokens
        return request

    def split(self) -> tuple[list[ChatMessage], ChatParams]:
        """The messages, and the parameters as a `ChatParams` (what `predict` receives)."""
        params = ChatParams.__new__(ChatParams)
        values = self.__dict__
        params.__dict__.update({name: values[name] for name in ChatParams._layout().names})
        return self.messages, params


# ---------------------------------------------------------------------------------------------
# Responses


@dataclass
class TopTokenLogProb(_ChatData):
    token: str
    logprob: float
    bytes: list[int] | None = None
    _fields = (("token", STR, True), ("logprob", NUMBER, True))


@dataclass
class TokenLogProb(_ChatData):
    token: str
    logprob: float
    top_logprobs: list[TopTokenLogProb]
    bytes: list[int] | None = None
    _fields = (
        ("token", STR, True),
        ("logprob", NUMBER, True),
        ("top_logprobs", [TopTokenLogProb], True),
    )


@dataclass
class ChatChoiceLogProbs(_ChatData):
    content: list[TokenLogProb] | None = None
    _fields = (("content", [TokenLogProb], False),)


@dataclass
class ChatChoice(_ChatData):
    message: ChatMessage
    index: int = 0
    finish_reason: str | None = "stop"
    logprobs: ChatChoiceLogProbs | None = None
    _fields = (
        ("message", ChatMessage, True),
        ("index", INT, True),
        ("finish_reason", STR, False),
        ("logprobs", ChatChoiceLogProbs, False),
    )


@dataclass
class TokenUsageStats(_ChatData):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    _fields = (
        ("prompt_tokens", INT, False),
        ("completion_tokens", INT, False),
        ("total_tokens", INT, False),
    )


def _now() -> int:
    return int(time.time())


@dataclass
class ChatResponse(_ChatData):
    """What `predict` returns: an OpenAI `chat.completion`."""

    choices: list[ChatChoice]
    usage: TokenUsageStats | None = None
    id: str | None = None
    model: str | None = None
    object: str = "chat.completion"
    created: int = field(default_factory=_now)
    custom_outputs: dict[str, Any] | None = None
    _fields = (
        ("choices", [ChatChoice], True),
        ("usage", TokenUsageStats, False),
        ("id", STR, False),
        ("model", STR, False),
        ("object", STR, True),
        ("created", INT, True),
        ("custom_outputs", DICT, False),
    )


@dataclass
class ChatChoiceDelta(_ChatData):
    role: str | None = "assistant"
    content: str | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    _fields = (
        ("role", STR, False),
        ("content", STR, False),
        ("refusal", STR, False),
        ("name", STR, False),
        ("tool_calls", [ToolCallDelta], False),
    )


@dataclass
class ChatChunkChoice(_ChatData):
    delta: ChatChoiceDelta
    index: int = 0
    finish_reason: str | None = None
    logprobs: ChatChoiceLogProbs | None = None
    _fields = (
        ("delta", ChatChoiceDelta, True),
        ("index", INT, True),
        ("finish_reason", STR, False),
        ("logprobs", ChatChoiceLogProbs, False),
    )


@dataclass
class ChatChunk(_ChatData):
    """What `predict_stream` yields: an OpenAI `chat.completion.chunk`."""

    choices: list[ChatChunkChoice]
    usage: TokenUsageStats | None = None
    id: str | None = None
    model: str | None = None
    object: str = "chat.completion.chunk"
    created: int = field(default_factory=_now)
    _fields = (
        ("choices", [ChatChunkChoice], True),
        ("usage", TokenUsageStats, False),
        ("id", STR, False),
        ("model", STR, False),
        ("object", STR, True),
        ("created", INT, True),
    )


# MLflow's names, so an MLflow ChatModel ports by changing its imports.
ChatCompletionRequest = ChatRequest
ChatCompletionResponse = ChatResponse
ChatCompletionChunk = ChatChunk
