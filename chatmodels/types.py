"""Chat dataclasses in the OpenAI chat-completions format, field for field as MLflow's llm types.

Each field is declared once, as a dataclass field with a type hint (`Annotated[..., Spec(...)]`
where a range or a description is needed): validation, `from_dict`, `to_dict` and the signature's
JSON Schema are derived from that declaration (chatmodels.fields). Nested dicts become nested
types on construction; `validate()` re-checks a whole tree (authors may mutate objects after
building them); every failure raises `ChatDataError` naming the field path. `to_dict()` returns
plain containers without the `None` fields of chat types (values inside a plain dict such as
`custom_outputs` are kept as given, as in MLflow). `from_dict` ignores unknown keys, except where
a type keeps them in `extra` (request parameters, JSON Schema keywords).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from chatmodels import request_rules
from chatmodels.exceptions import ChatDataError, MissingParameter
from chatmodels.fields import Layout, Spec, fail, join

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
    "FileContentPart",
    "FunctionToolCallArguments",
    "FunctionToolDefinition",
    "ImageContentPart",
    "ImageUrl",
    "InputAudio",
    "InputFile",
    "ParamProperty",
    "RefusalContentPart",
    "TextContentPart",
    "TokenLogProb",
    "TokenUsageStats",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinition",
    "ToolParamsSchema",
    "TopTokenLogProb",
]


class _ChatData:
    """Small validating base. A subclass is a dataclass; its fields and hints are the declaration.

    Class options: `_unknown_keys` ("ignore"; "extra": keys no field takes go to the `extra`
    field; "inline": the same, and `to_dict` puts them back beside the fields), `_server_keys`
    (keys never put in `extra`), `_null_means_default` (`null` for a field with a plain default
    means that default, as in OpenAI requests), `_schema_rules` (JSON Schema for `_check_extra`).
    """

    _unknown_keys: ClassVar[str] = "ignore"
    _server_keys: ClassVar[frozenset[str]] = frozenset()
    _null_means_default: ClassVar[bool] = False
    _schema_rules: ClassVar[dict[str, Any]] = {}
    _layout_cache: ClassVar[Layout | None]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._layout_cache = None  # each class its own, built at first use (hints may refer ahead)

    def __post_init__(self) -> None:
        self._convert("")
        self._check("", deep=False)
        self._normalize()

    @classmethod
    def _layout(cls) -> Layout:
        layout = cls._layout_cache
        if layout is None:
            layout = cls._layout_cache = Layout(cls)
        return layout

    # -- conversion of nested dicts -------------------------------------------------------
    def _convert(self, path: str) -> None:
        values = self.__dict__
        for name, kind in (self._layout_cache or self._layout()).nested:
            value = values[name]
            if value is None:
                continue
            converted = kind.convert(value, join(path, name))
            if converted is not value:
                values[name] = converted

    # -- validation -----------------------------------------------------------------------
    def validate(self, path: str = "") -> None:
        """Re-check every field of this object and of everything nested in it."""
        self._check(path)

    def _check(self, path: str, *, deep: bool = True, given: list[str] | None = None) -> None:
        # Construction checks nested objects shallowly: each was checked when it was built.
        # `validate()` goes deep, for objects changed after they were built. `from_dict` checks
        # only the fields it was `given`: defaults are valid (the Layout makes sure).
        values = self.__dict__
        layout = self._layout_cache or self._layout()
        checks = layout.checks if given is None else map(layout.checks_by_name.__getitem__, given)
        for name, kind, nullable, accepts in checks:
            value = values[name]
            if value is None:
                if not nullable:
                    field_path = join(path, name)
                    raise MissingParameter(f"{field_path}: is required", param=field_path)
                continue
            if accepts(value) and not (deep and kind.nested):
                continue
            kind.check(value, join(path, name), deep)
        self._check_extra(path)

    def _check_extra(self, path: str) -> None:
        """Rules across fields; overridden where needed (with `_schema_rules` beside it)."""

    def _normalize(self) -> None:
        """Derived values, once a new object is valid; overridden where needed."""

    # -- dict round trip ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, path: str = ""):
        """Build from a dict; keys this type does not know are ignored (or kept in `extra`)."""
        if not isinstance(data, dict):
            raise fail(path or cls.__name__, "object (dict)", data)
        layout = cls._layout_cache or cls._layout()
        for name in layout.required:
            if name not in data:
                field_path = join(path, name)
                raise MissingParameter(f"{field_path}: is required", param=field_path)
        values = layout.defaults.copy()
        known = layout.known
        unknown = None
        given = []
        for key, value in data.items():
            if key in known:
                values[key] = value
                given.append(key)
            elif layout.unknown_keys != "ignore" and key not in layout.ignored_keys:
                if unknown is None:
                    unknown = {}
                unknown[key] = value
        for name in layout.integers:
            value = values[name]
            if type(value) is float and value.is_integer():
                values[name] = int(value)
        for name in layout.null_means_default:
            if values[name] is None:
                values[name] = layout.defaults[name]
        for name, factory in layout.factories:
            if name not in data:
                values[name] = factory()
        if unknown is not None:
            extra = values["extra"]
            if extra is None or isinstance(extra, dict):
                values["extra"] = {**(extra or {}), **unknown}
                if "extra" not in given:
                    given.append("extra")
        instance = cls.__new__(cls)
        instance.__dict__.update(values)
        instance._convert(path)
        instance._check(path, deep=False, given=given)
        instance._normalize()
        return instance

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists, without the `None` fields of chat types at any level."""
        values = self.__dict__
        result = {}
        for name in (self._layout_cache or self._layout()).names:
            value = values[name]
            if value is not None:
                result[name] = _plain(value)
        if self._unknown_keys == "inline" and "extra" in result:
            for key, value in result.pop("extra").items():
                result.setdefault(key, value)
        return result


def _plain(value: Any) -> Any:
    if isinstance(value, _ChatData):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        # A plain dict is the author's or the client's data: kept as given, None values too.
        return {key: _plain(item) for key, item in value.items()}
    return value


# ---------------------------------------------------------------------------------------------
# Content parts


@dataclass
class TextContentPart(_ChatData):
    text: str
    type: Literal["text"] = "text"


@dataclass
class ImageUrl(_ChatData):
    url: str
    detail: str | None = None


@dataclass
class ImageContentPart(_ChatData):
    image_url: ImageUrl
    type: Literal["image_url"] = "image_url"


@dataclass
class InputAudio(_ChatData):
    data: str
    format: str


@dataclass
class AudioContentPart(_ChatData):
    input_audio: InputAudio
    type: Literal["input_audio"] = "input_audio"


@dataclass
class RefusalContentPart(_ChatData):
    """An assistant message's refusal, as a content part."""

    refusal: str
    type: Literal["refusal"] = "refusal"


@dataclass
class InputFile(_ChatData):
    """A file given inline (`file_data`, base64) or by a provider's `file_id`."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


@dataclass
class FileContentPart(_ChatData):
    file: InputFile
    type: Literal["file"] = "file"


ContentPart = Annotated[
    TextContentPart | ImageContentPart | AudioContentPart | RefusalContentPart | FileContentPart,
    Spec(expected="content part (text, image_url, input_audio, refusal or file)"),
]


# ---------------------------------------------------------------------------------------------
# Tools


@dataclass
class FunctionToolCallArguments(_ChatData):
    """The function a tool call invokes: its name and its JSON-encoded arguments."""

    name: str
    arguments: str

    def to_tool_call(self, id: str | None = None) -> ToolCall:
        """This call as a `ToolCall` (a new id when none is given), as in MLflow."""
        if id is None:
            return ToolCall(function=self)
        return ToolCall(function=self, id=id)


def _tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class ToolCall(_ChatData):
    function: FunctionToolCallArguments
    id: Annotated[str, Spec(description="Identifier the tool result refers back to.")] = field(
        default_factory=_tool_call_id
    )
    type: str = "function"


@dataclass
class ToolCallDelta(_ChatData):
    """A tool call as it arrives in a stream: `index` always, the rest in pieces."""

    index: int
    id: str | None = None
    type: str | None = None
    function: dict[str, Any] | None = None

    @classmethod
    def _adopt(cls, value: Any, index: int) -> Any:
        # MLflow's deltas carry whole ToolCalls; a stream needs each one's index.
        if isinstance(value, ToolCall):
            return cls(index=index, id=value.id, type=value.type, function=value.function.to_dict())
        return value


JsonType = Literal["string", "number", "integer", "object", "array", "boolean", "null"]


@dataclass
class ParamProperty(_ChatData):
    """One parameter of a function tool, as JSON Schema. Keywords beyond these four (`anyOf`,
    `properties`, `minimum`…) are kept in `extra` and given back by `to_dict`."""

    type: JsonType | list[JsonType] | None = None
    description: str | None = None
    enum: list[Any] | None = None
    items: ParamProperty | None = None
    extra: dict[str, Any] | None = None
    _unknown_keys: ClassVar[str] = "inline"


@dataclass
class ToolParamsSchema(_ChatData):
    """JSON Schema of a function tool's parameters; other keywords (`$defs`…) kept in `extra`."""

    properties: dict[str, ParamProperty] = field(default_factory=dict)
    type: Literal["object"] = "object"
    required: list[str] | None = None
    additionalProperties: bool | None = None  # JSON Schema's own name
    extra: dict[str, Any] | None = None
    _unknown_keys: ClassVar[str] = "inline"


@dataclass
class FunctionToolDefinition(_ChatData):
    name: Annotated[str, Spec(description="Function name.")]
    description: str | None = None
    parameters: ToolParamsSchema | None = None
    strict: bool | None = False

    def to_tool_definition(self) -> ToolDefinition:
        return ToolDefinition(function=self)


@dataclass
class ToolDefinition(_ChatData):
    """A function tool. Tools of other types stay plain dicts in `ChatParams.tools`."""

    function: FunctionToolDefinition
    type: Literal["function"] = "function"


# ---------------------------------------------------------------------------------------------
# Messages, parameters, requests


@dataclass
class ChatMessage(_ChatData):
    """A chat message. `content` is a string or a list of content parts."""

    role: Annotated[
        str, Spec(description="Who wrote it: system, developer, user, assistant or tool.")
    ]
    content: Annotated[
        str | list[ContentPart] | None,
        Spec(
            description="The text, or a list of content parts. Required unless the message"
            " has tool_calls or a refusal.",
            expected="str or list of content parts",
        ),
    ] = None
    refusal: Annotated[str | None, Spec(description="Refusal message from the assistant.")] = None
    name: Annotated[str | None, Spec(description="Name of the participant.")] = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: Annotated[
        str | None, Spec(description="For role tool: the call this answers.")
    ] = None

    def _check_extra(self, path: str) -> None:
        # MLflow's rules: content unless tool calls or a refusal; never content and a refusal.
        if self.refusal and self.content:
            field_path = join(path, "refusal")
            raise ChatDataError(
                f"{field_path}: content and refusal cannot both be set", param=field_path
            )
        if self.content is None and not self.tool_calls and not self.refusal:
            field_path = join(path, "content")
            raise MissingParameter(
                f"{field_path}: is required unless the message has tool_calls or a refusal",
                param=field_path,
            )

    _schema_rules: ClassVar[dict[str, Any]] = {
        "anyOf": [
            {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
            {
                "required": ["tool_calls"],
                "properties": {"tool_calls": {"type": "array", "minItems": 1}},
            },
            {
                "required": ["refusal"],
                "properties": {"refusal": {"type": "string", "minLength": 1}},
            },
        ],
        "not": {
            "required": ["content", "refusal"],
            "properties": {
                "content": {"minLength": 1, "minItems": 1, "not": {"type": "null"}},
                "refusal": {"type": "string", "minLength": 1},
            },
        },
    }


@dataclass
class ChatParams(_ChatData):
    """Inference parameters: MLflow's, then the rest of the OpenAI chat-completions request."""

    # The ranges are the OpenAI API's (its OpenAPI document), so a client gets the same 400.
    temperature: Annotated[float, Spec(minimum=0, maximum=2)] = 1.0
    max_tokens: Annotated[int | None, Spec(minimum=1)] = None
    stop: Annotated[
        str | list[str] | None,
        Spec(min_items=1, max_items=4, description="Up to 4 sequences where generation stops."),
    ] = None
    n: Annotated[int, Spec(minimum=1, maximum=128)] = 1
    stream: bool = False
    top_p: Annotated[float | None, Spec(minimum=0, maximum=1)] = None
    top_k: int | None = None
    frequency_penalty: Annotated[float | None, Spec(minimum=-2, maximum=2)] = None
    presence_penalty: Annotated[float | None, Spec(minimum=-2, maximum=2)] = None
    custom_inputs: Annotated[
        dict[str, Any] | None, Spec(description="Free-form inputs for this model.")
    ] = None
    tools: list[ToolDefinition | dict[str, Any]] | None = None
    # The rest of the OpenAI request, for models that forward it upstream.
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    seed: Annotated[int | None, Spec(minimum=-(2**63), maximum=2**63 - 1)] = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[
        int | None, Spec(minimum=0, maximum=20, description="Needs logprobs true.")
    ] = None
    logit_bias: dict[str, float] | None = None
    reasoning_effort: str | None = None
    max_completion_tokens: Annotated[
        int | None, Spec(minimum=1, description="Also read as max_tokens when that is not set.")
    ] = None
    extra: Annotated[
        dict[str, Any] | None,
        Spec(description="Every other key of the request (vendor parameters), as sent."),
    ] = None
    _unknown_keys: ClassVar[str] = "extra"
    _null_means_default: ClassVar[bool] = True
    # Request keys the server reads itself: not handed to the model in `extra`.
    _server_keys: ClassVar[frozenset[str]] = frozenset({"model", "stream_options"})

    @classmethod
    def keys(cls) -> set[str]:
        """The names of the fields, as MLflow's `ChatParams.keys()`."""
        return set(cls._layout().names)

    def _normalize(self) -> None:
        if self.max_tokens is None and self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens


@dataclass
class ChatRequest(ChatParams):
    """A whole chat request: `messages` plus every `ChatParams` field. Keys no field takes go to
    `extra`, except `model` and `stream_options`; `null` for a parameter with a default means
    that default, as in the OpenAI API."""

    messages: Annotated[
        list[ChatMessage],
        Spec(min_items=1, required=True, description="The conversation so far."),
    ] = field(default_factory=list)

    def _check_extra(self, path: str) -> None:
        # The OpenAI API's rules across fields of a request (a model's own code may build
        # messages and params freely: these hold for what a client sends).
        request_rules.check(self, path)

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


@dataclass
class TokenLogProb(_ChatData):
    token: str
    logprob: float
    top_logprobs: list[TopTokenLogProb]
    bytes: list[int] | None = None


@dataclass
class ChatChoiceLogProbs(_ChatData):
    content: list[TokenLogProb] | None = None


@dataclass
class ChatChoice(_ChatData):
    message: ChatMessage
    index: int = 0
    finish_reason: str | None = "stop"
    logprobs: ChatChoiceLogProbs | None = None


# A token count is a non-negative integer below 2**53 (exact in every JSON reader, and in the
# database's counters): anything else a model reports is invalid output, never a counter.
TokenCount = Annotated[int | None, Spec(minimum=0, maximum=2**53 - 1)]


@dataclass
class TokenUsageStats(_ChatData):
    prompt_tokens: TokenCount = None
    completion_tokens: TokenCount = None
    total_tokens: TokenCount = None


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
    created: Annotated[int, Spec(description="Unix time in seconds.")] = field(default_factory=_now)
    custom_outputs: dict[str, Any] | None = None


@dataclass
class ChatChoiceDelta(_ChatData):
    """A piece of a streamed message. `tool_calls` also takes whole `ToolCall`s, as in MLflow:
    each becomes a `ToolCallDelta` at its position."""

    role: str | None = "assistant"
    content: str | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    def _check_extra(self, path: str) -> None:
        if self.refusal and self.content:
            field_path = join(path, "refusal")
            raise ChatDataError(
                f"{field_path}: content and refusal cannot both be set", param=field_path
            )

    _schema_rules: ClassVar[dict[str, Any]] = {
        "not": {
            "required": ["content", "refusal"],
            "properties": {
                "content": {"type": "string", "minLength": 1},
                "refusal": {"type": "string", "minLength": 1},
            },
        }
    }


@dataclass
class ChatChunkChoice(_ChatData):
    delta: ChatChoiceDelta
    index: int = 0
    finish_reason: str | None = None
    logprobs: ChatChoiceLogProbs | None = None


@dataclass
class ChatChunk(_ChatData):
    """What `predict_stream` yields: an OpenAI `chat.completion.chunk`."""

    choices: list[ChatChunkChoice]
    usage: TokenUsageStats | None = None
    id: str | None = None
    model: str | None = None
    object: str = "chat.completion.chunk"
    created: int = field(default_factory=_now)
    custom_outputs: dict[str, Any] | None = None


# MLflow's names, so an MLflow ChatModel ports by changing its imports.
ChatCompletionRequest = ChatRequest
ChatCompletionResponse = ChatResponse
ChatCompletionChunk = ChatChunk
