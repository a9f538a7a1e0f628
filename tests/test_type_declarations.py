"""One declaration per field: for every chat type, the generated JSON Schema, the validator
(`from_dict`) and `to_dict` agree field by field.

Values are made from each field's type hint, independently of chatmodels.fields: a valid value of
every field, then for each field a wrong-typed value, `null` and a missing key.
"""

from __future__ import annotations

import functools
import types
from dataclasses import MISSING, fields
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
from jsonschema import Draft202012Validator

import chatmodels.types as chat_types
from chatmodels.exceptions import ChatDataError
from chatmodels.fields import Spec, object_schema

ALIASES = {"ChatCompletionRequest", "ChatCompletionResponse", "ChatCompletionChunk"}
ALL_TYPES = [getattr(chat_types, name) for name in chat_types.__all__ if name not in ALIASES]
# Rules across fields the full sample must respect: a message has content *or* a refusal; a
# request's tool_choice names one of its tools, its response_format has a known type and its
# top_logprobs needs logprobs (each sampled as a ChatParams field, which has no such rule).
LEFT_OUT_OF_SAMPLES = {
    chat_types.ChatMessage: {"refusal"},
    chat_types.ChatChoiceDelta: {"refusal"},
    chat_types.ChatRequest: {"tool_choice", "response_format", "top_logprobs"},
}


def unwrap(hint: Any) -> tuple[Any, Spec | None, bool]:
    """(the hint without Annotated and None, its Spec, whether None is allowed)."""
    spec = None
    if get_origin(hint) is Annotated:
        hint, *extras = get_args(hint)
        spec = next((extra for extra in extras if isinstance(extra, Spec)), None)
    nullable = False
    if get_origin(hint) in (Union, types.UnionType):
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        nullable = len(args) < len(get_args(hint))
        hint = args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007
    return hint, spec, nullable


def valid_value(hint: Any) -> Any:
    hint, _spec, _nullable = unwrap(hint)
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return valid_value(get_args(hint)[0])
    if origin is Literal:
        return get_args(hint)[0]
    if origin is list:
        return [valid_value(get_args(hint)[0])]
    if origin is dict:
        return {"key": valid_value(get_args(hint)[1])}
    if hint is str:
        return "text"
    if hint is bool:
        return True
    if hint is int:
        return 1  # within every declared range (>= 0, >= 1)
    if hint is float:
        return 0.5
    if hint is Any:
        return "anything"
    return nested_sample(hint)


def wrong_value(hint: Any) -> Any:
    hint, _spec, _nullable = unwrap(hint)
    origin = get_origin(hint)
    if origin in (Union, types.UnionType, Literal) or hint is str:
        return 12345
    if origin is list:
        return "not a list"
    if origin is dict:
        return ["not", "an", "object"]
    if hint in (int, float, bool):
        return "not a number or bool"
    if hint is Any:
        return None  # nothing is wrong for Any
    return "not an object"


def inline(cls: type) -> bool:
    """JSON Schema types keep other keys beside their fields (in `extra` on the Python side)."""
    return cls._unknown_keys == "inline"


@functools.cache
def hints_of(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls, include_extras=True)
    return {
        f.name: hints[f.name]
        for f in fields(cls)
        if f.name not in LEFT_OUT_OF_SAMPLES.get(cls, ())
        and not (inline(cls) and f.name == "extra")
    }


def full_sample(cls: type) -> dict[str, Any]:
    """A dict with a valid value for every field (nested objects: their required fields)."""
    sample = {name: valid_value(hint) for name, hint in hints_of(cls).items()}
    if inline(cls):
        sample["x-other-keyword"] = {"kept": None}
    return sample


def nested_sample(cls: type) -> dict[str, Any]:
    """A small valid dict: the required fields (each nested type is tested with its own full
    sample), and content for a message."""
    hints = hints_of(cls)
    sample = {name: valid_value(hints[name]) for name in sorted(required_keys(cls))}
    if cls is chat_types.ChatMessage:
        sample["content"] = "text"
        sample["role"] = "user"  # a request's roles are the API's
    return sample


@functools.cache
def required_keys(cls: type) -> frozenset[str]:
    hints = get_type_hints(cls, include_extras=True)
    return frozenset(
        f.name
        for f in fields(cls)
        if (f.default is MISSING and f.default_factory is MISSING)
        or (unwrap(hints[f.name])[1] or Spec()).required
    )


@functools.cache
def schema_validator(cls: type) -> Draft202012Validator:
    schema = object_schema(cls)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
def test_a_full_valid_object_passes_the_validator_and_the_schema_and_round_trips(cls):
    sample = full_sample(cls)

    instance = cls.from_dict(sample)
    data = instance.to_dict()

    assert list(schema_validator(cls).iter_errors(sample)) == []
    assert list(schema_validator(cls).iter_errors(data)) == []
    assert set(data) == set(sample)
    assert cls.from_dict(data) == instance


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
def test_the_schema_declares_exactly_the_fields_and_the_required_ones(cls):
    schema = object_schema(cls)
    declared = {f.name for f in fields(cls)}
    if inline(cls):
        declared.discard("extra")  # its keys sit beside the fields

    assert set(schema["properties"]) == declared
    assert set(schema.get("required", ())) == required_keys(cls)


def field_cases():
    for cls in ALL_TYPES:
        for name, hint in hints_of(cls).items():
            yield pytest.param(cls, name, hint, id=f"{cls.__name__}.{name}")


@pytest.mark.parametrize(("cls", "name", "hint"), list(field_cases()))
def test_a_wrong_typed_value_fails_both_the_validator_and_the_schema(cls, name, hint):
    wrong = wrong_value(hint)
    if wrong is None:
        pytest.skip("any value is valid")
    sample = {**full_sample(cls), name: wrong}

    with pytest.raises(ChatDataError) as caught:
        cls.from_dict(sample)

    assert caught.value.param is not None and caught.value.param.split(".")[0].split("[")[0] in (
        name,
        "type",  # a discriminated union names the `type` it could not match
    ), str(caught.value)
    assert not schema_validator(cls).is_valid(sample), f"schema accepted {name}={wrong!r}"


@pytest.mark.parametrize(("cls", "name", "hint"), list(field_cases()))
def test_null_is_refused_by_both_exactly_where_the_hint_does_not_allow_none(cls, name, hint):
    sample = {**full_sample(cls), name: None}
    nullable = unwrap(hint)[2]
    null_means_default = cls._null_means_default and cls.__dataclass_fields__[name].default not in (
        MISSING,
        None,
    )

    accepted_by_schema = schema_validator(cls).is_valid(sample)
    try:
        cls.from_dict(sample)
        accepted = True
    except ChatDataError as error:
        accepted = False
        assert name in str(error)

    assert accepted is (nullable or null_means_default)
    assert accepted_by_schema is accepted


@pytest.mark.parametrize(("cls", "name", "hint"), list(field_cases()))
def test_a_missing_key_is_refused_by_both_exactly_when_it_is_required(cls, name, hint):
    sample = {key: value for key, value in full_sample(cls).items() if key != name}
    required = name in required_keys(cls)

    try:
        cls.from_dict(sample)
        accepted = True
    except ChatDataError:
        accepted = False

    assert accepted is not required
    assert schema_validator(cls).is_valid(sample) is accepted


def test_token_bytes_are_validated_now():
    with pytest.raises(ChatDataError, match=r"bytes\[0\]: expected int"):
        chat_types.TopTokenLogProb(token="a", logprob=-0.1, bytes=["x"])
    with pytest.raises(ChatDataError, match="bytes: expected list of int"):
        chat_types.TokenLogProb(token="a", logprob=-0.1, top_logprobs=[], bytes="AQ==")


def test_every_type_is_reachable_from_the_package():
    import chatmodels

    for cls in ALL_TYPES:
        assert getattr(chatmodels, cls.__name__) is cls
