"""Field kinds, read once per class from its dataclass fields and type hints.

A chat type declares each field once: `name: hint = default`, with `Annotated[hint, Spec(...)]`
where a hint cannot say everything (a range, a description). From that declaration come the
validation of values (`Kind.accepts` / `Kind.check`), the conversion of nested dicts
(`Kind.convert`) and the JSON Schema of the signature (`Kind.schema`), side by side so they agree.
"""

from __future__ import annotations

import copy
import inspect
import math
import types
from dataclasses import MISSING, dataclass, fields
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from chatmodels.exceptions import ChatDataError, EmptyArray, MissingParameter, short_repr

if TYPE_CHECKING:
    from chatmodels.types import _ChatData

NoneType = type(None)

# A class appears in its own schema (ParamProperty.items) this deep, then as an open object.
SCHEMA_RECURSION_DEPTH = 3


@dataclass(frozen=True)
class Spec:
    """What a type hint cannot say about a field.

    `description` is for people (the signature); `minimum`/`maximum` bound a number;
    `min_items`/`max_items` a list (the list option of a union too); `required` makes a dict
    key required although Python construction has a default; `expected` replaces the generated
    words of error messages where they read badly.
    """

    description: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    required: bool = False
    expected: str | None = None


# ---------------------------------------------------------------------------------------------
# Messages


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def describe(value: Any) -> str:
    return f"{type(value).__name__} {short_repr(value)}"


def fail(path: str, expected: str, value: Any) -> ChatDataError:
    return ChatDataError(f"{path}: expected {expected}, got {describe(value)}", param=path)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# ---------------------------------------------------------------------------------------------
# Kinds


class Kind:
    """How one declared type is validated, converted and described."""

    label = "any"
    # True when values may hold chat types (dicts to convert, objects to validate deeply).
    nested = False

    def accepts(self, value: Any) -> bool:
        """The quick test: right type and range at this level; chat objects by isinstance only."""
        return True

    def check(self, value: Any, path: str, deep: bool) -> None:
        """Raise ChatDataError naming the path when `value` is wrong (deep: nested objects too)."""

    def convert(self, value: Any, path: str) -> Any:
        """Nested dicts made into chat types; anything else as given (check reports it)."""
        return value

    def accepts_object(self, value: Any) -> bool:
        """Whether `value` is already one of the chat types of this kind."""
        return False

    def schema(self, stack: tuple[type, ...]) -> dict[str, Any]:
        return {}


class Scalar(Kind):
    def __init__(self, label: str, json_type: str, test, minimum=None, maximum=None):
        self.label, self.json_type, self.test = label, json_type, test
        self.minimum, self.maximum = minimum, maximum
        # The quick test as an instance attribute: no extra call per value checked.
        if minimum is None and maximum is None:
            self.accepts = test  # type: ignore[method-assign]  # deliberate, see above
        else:
            self.accepts = self._accepts_in_range  # type: ignore[method-assign]  # likewise

    def with_range(self, minimum, maximum) -> Scalar:
        return Scalar(self.label, self.json_type, self.test, minimum, maximum)

    def _in_range(self, value: Any) -> bool:
        return (self.minimum is None or value >= self.minimum) and (
            self.maximum is None or value <= self.maximum
        )

    def _accepts_in_range(self, value: Any) -> bool:
        return self.test(value) and self._in_range(value)

    def check(self, value: Any, path: str, deep: bool) -> None:
        if not self.test(value):
            raise fail(path, self.label, value)
        if not self._in_range(value):
            raise fail(path, self._range_label(), value)

    def _range_label(self) -> str:
        if self.maximum is None:
            return f"{self.label} >= {_number(self.minimum)}"
        if self.minimum is None:
            return f"{self.label} <= {_number(self.maximum)}"
        return f"{self.label} between {_number(self.minimum)} and {_number(self.maximum)}"

    def schema(self, stack: tuple[type, ...]) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.json_type}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    # NaN and ±Infinity are not numbers JSON (or the OpenAI API) allows.
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


SCALARS: dict[Any, Scalar] = {
    str: Scalar("str", "string", lambda value: isinstance(value, str)),
    int: Scalar("int", "integer", _is_int),
    float: Scalar("number", "number", _is_number),
    bool: Scalar("bool", "boolean", lambda value: isinstance(value, bool)),
}


class AnyKind(Kind):
    pass


class LiteralKind(Kind):
    def __init__(self, values: tuple[Any, ...]):
        self.values = values
        self.label = "one of " + ", ".join(repr(value) for value in values)

    def accepts(self, value: Any) -> bool:
        # Compared by type too: True == 1, and an unhashable value must not raise.
        return any(type(value) is type(allowed) and value == allowed for allowed in self.values)

    def check(self, value: Any, path: str, deep: bool) -> None:
        if not self.accepts(value):
            raise ChatDataError(f"{path}: expected {self.label}, got {value!r}", param=path)

    def schema(self, stack: tuple[type, ...]) -> dict[str, Any]:
        if all(isinstance(value, str) for value in self.values):
            return {"type": "string", "enum": list(self.values)}
        return {"enum": list(self.values)}


class ClassKind(Kind):
    """A nested chat type: a dict becomes the class, an instance is kept."""

    nested = True

    def __init__(self, cls: type[_ChatData]):
        self.cls = cls
        self.label = cls.__name__

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.cls)

    accepts_object = accepts

    @property
    def adopt(self):
        """The class's way of taking in another type (ToolCallDelta takes a ToolCall), if any."""
        return getattr(self.cls, "_adopt", None)

    def check(self, value: Any, path: str, deep: bool) -> None:
        if not isinstance(value, self.cls):
            raise fail(path, self.label, value)
        if deep:
            value._check(path)

    def convert(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return self.cls.from_dict(value, path)
        return value

    def schema(self, stack: tuple[type, ...]) -> dict[str, Any]:
        return object_schema(self.cls, stack)


class ListKind(Kind):
    def __init__(self, item: Kind, min_items: int | None = None, max_items: int | None = None):
        self.item, self.min_items, self.max_items = item, min_items, max_items
        self.label = f"list of {item.label}"
        self.nested = item.nested

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, list):
            return False
        if self.min_items is not None and len(value) < self.min_items:
            return False
        if self.max_items is not None and len(value) > self.max_items:
            return False
        accepts = self.item.accepts
        return all(accepts(item) for item in value)

    def check(self, value: Any, path: str, deep: bool) -> None:
        if not isinstance(value, list):
            raise fail(path, self.label, value)
        if self.min_items is not None and len(value) < self.min_items:
            if not value:  # OpenAI's own code for it
                raise EmptyArray(f"{path}: expected a non-empty {self.label}, got []", param=path)
            raise ChatDataError(
                f"{path}: expected at least {self.min_items} items, got {len(value)}", param=path
            )
        if self.max_items is not None and len(value) > self.max_items:
            raise ChatDataError(
                f"{path}: expected at most {self.max_items} items, got {len(value)}", param=path
            )
        accepts, check = self.item.accepts, self.item.check
        for i, item in enumerate(value):
            if deep or not accepts(item):
                check(item, f"{path}[{i}]", deep)

    def convert(self, value: Any, path: str) -> Any:
        if not self.nested or not isinstance(value, list):
            return value
        adopt = getattr(self.item, "adopt", None)  # only chat types may adopt
        dicts = [isinstance(item, dict) for item in value]
        if not any(dicts):
            if adopt is not None:
                return [adopt(item, i) for i, item in enumerate(value)]
            return value
        if not all(dicts) and any(self.item.accepts_object(item) for item in value):
            # MLflow's rule: a list is all dicts or all objects, never a mix.
            raise ChatDataError(
                f"{path}: expected all items to be {self.item.label} objects or all dicts,"
                " got a mix",
                param=path,
            )
        convert = self.item.convert
        return [convert(item, f"{path}[{i}]") for i, item in enumerate(value)]

    def schema(self, stack: tuple[type, ...]) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "items": self.item.schema(stack)}
        if self.min_items is not None:
            schema["minItems"] = self.min_items
        if self.max_items is not None:
            schema["maxItems"] = self.max_items
        return schema


class DictKind(Kind):
    """A JSON object: string keys (as in MLflow's custom_inputs check), values of one kind."""

    def __init__(self, value: Kind):
        self.value = value
        self.nested = value.nested
        self.any_value = isinstance(value, AnyKind)
        self.label = "object (dict)" if self.any_value else f"object (dict) of {value.label}"

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, dict):
            return False
        if self.any_value:
            return all(type(key) is str for key in value)
        accepts = self.value.accepts
        return all(type(key) is str and accepts(item) for key, item in value.items())

    def check(self, value: Any, path: str, deep: bool) -> None:
        if not isinstance(value, dict):
            raise fail(path, self.label, value)
        accepts, check = self.value.accepts, self.value.check
        for key, item in value.items():
            if not isinstance(key, str):
                raise ChatDataError(f"{path}: expected str keys, got {describe(key)}", param=path)
            if deep or not accepts(item):
                check(item, f"{path}.{key}", deep)

    def convert(self, value: Any, path: str) -> Any:
        if not self.nested or not isinstance(value, dict):
            return value
        if not any(isinstance(item, dict) for item in value.values()):
            return value
        convert = self.value.convert
        return {key: convert(item, f"{path}.{key}") for key, item in value.items()}

    def schema(self, stack: tuple[type, ...]) -> dict[str, Any]:
        if self.any_value:
            return {"type": "object"}
        return {"type": "object", "additionalProperties": self.value.schema(stack)}


class UnionKind(Kind):
    """One of several kinds. Dicts among chat types are told apart by their `type` key (content
    parts); a dict whose `type` names none of them is kept as a dict when the union allows it
    (tools of other types than function)."""

    def __init__(self, options: list[Kind], expected: str | None = None):
        self.options = options
        self.label = expected or " or ".join(option.label for option in options)
        self.nested = any(option.nested for option in options)
        self.classes = [option for option in options if isinstance(option, ClassKind)]
        self.dict_option = next((o for o in options if isinstance(o, DictKind)), None)
        self.list_option = next((o for o in options if isinstance(o, ListKind)), None)
        # (class kind, the values its `type` field allows, or None for any)
        self.discriminators = [(kind, _type_literals(kind.cls)) for kind in self.classes]

    def accepts(self, value: Any) -> bool:
        if self.classes and isinstance(value, dict):
            # A dict that names one of the chat types should have been converted to it.
            if self.dict_option is None:
                return False
            try:
                picked = self._pick(value, "")
            except ChatDataError:
                return False
            return picked is None and self.dict_option.accepts(value)
        return any(option.accepts(value) for option in self.options)

    def accepts_object(self, value: Any) -> bool:
        return any(isinstance(value, kind.cls) for kind in self.classes)

    def check(self, value: Any, path: str, deep: bool) -> None:
        if self.classes and isinstance(value, dict):
            picked = self._pick(value, path)
            if picked is not None:
                raise fail(path, picked.label, value)
            if self.dict_option is None:
                raise fail(path, self.label, value)
            self.dict_option.check(value, path, deep)
            return
        for option in self.options:
            if option.accepts(value):
                if deep and option.nested:
                    option.check(value, path, deep)
                return
        # Nothing fits. A list says which item is wrong and why (content parts), or its length.
        if isinstance(value, list) and self.list_option is not None:
            self.list_option.check(value, path, deep)
        raise fail(path, self.label, value)

    def convert(self, value: Any, path: str) -> Any:
        if isinstance(value, dict) and self.classes:
            picked = self._pick(value, path)
            return picked.cls.from_dict(value, path) if picked is not None else value
        if isinstance(value, list) and self.list_option is not None:
            return self.list_option.convert(value, path)
        return value

    def _pick(self, data: dict, path: str) -> ClassKind | None:
        """The chat type a dict stands for, None to keep it as a dict; raises if it fits none."""
        several = len(self.classes) > 1
        if "type" not in data:
            if several:
                raise MissingParameter(
                    f"{join(path, 'type')}: is required", param=join(path, "type")
                )
            return self.classes[0]
        given = data["type"]
        for kind, literals in self.discriminators:
            if literals is None or any(
                type(given) is type(allowed) and given == allowed for allowed in literals
            ):
                return kind
        if self.dict_option is not None:
            return None
        # Every class here has its literals: one without would have taken the dict above.
        allowed = ", ".join(
            repr(v) for _kind, literals in self.discriminators for v in literals or ()
        )
        raise ChatDataError(
            f"{join(path, 'type')}: expected one of {allowed}, got {given!r}",
            param=join(path, "type"),
        )

    def schema(self, stack: tuple[type, ...]) -> dict[str, Any]:
        several = len(self.classes) > 1
        options = []
        for option in self.options:
            schema = option.schema(stack)
            if several and isinstance(option, ClassKind) and "properties" in schema:
                schema["required"] = sorted({*schema.get("required", ()), "type"})
            if option is self.dict_option and self.classes:
                taken = [v for _kind, literals in self.discriminators for v in literals or ()]
                schema = {
                    **schema,
                    "required": ["type"],
                    "properties": {"type": {"not": {"enum": taken}}},
                }
            options.append(schema)
        return {"anyOf": options}


def _type_literals(cls: type[_ChatData]) -> tuple[Any, ...] | None:
    kind = cls._layout().kinds.get("type")
    return kind.values if isinstance(kind, LiteralKind) else None


# ---------------------------------------------------------------------------------------------
# From type hints to kinds


def _spec_of(hint: Any) -> tuple[Any, Spec | None]:
    if get_origin(hint) is Annotated:
        hint, *extras = get_args(hint)
        return hint, next((extra for extra in extras if isinstance(extra, Spec)), None)
    return hint, None


def kind_of(hint: Any) -> tuple[Kind, bool, Spec]:
    """The kind of a field's hint, whether it may be None, and its Spec."""
    hint, spec = _spec_of(hint)
    spec = spec or Spec()
    nullable = False
    if get_origin(hint) in (Union, types.UnionType):
        args = get_args(hint)
        nullable = NoneType in args
        rest = [arg for arg in args if arg is not NoneType]
        kind = _kind(rest[0]) if len(rest) == 1 else UnionKind([_kind(a) for a in rest])
    else:
        kind = _kind(hint)
    if spec.minimum is not None or spec.maximum is not None:
        if not isinstance(kind, Scalar):
            raise TypeError(f"minimum and maximum bound a number, not a {kind.label}")
        kind = kind.with_range(spec.minimum, spec.maximum)
    if spec.min_items is not None or spec.max_items is not None:
        kind = _bounded_list(kind, spec.min_items, spec.max_items)
    if spec.expected is not None:
        kind = copy.copy(kind)  # scalars are shared
        kind.label = spec.expected
    return kind, nullable, spec


def _bounded_list(kind: Kind, min_items: int | None, max_items: int | None) -> Kind:
    """`kind` with its list (itself, or a union's list option: `stop`) bounded in length."""
    if isinstance(kind, ListKind):
        return ListKind(kind.item, min_items, max_items)
    if isinstance(kind, UnionKind) and kind.list_option is not None:
        options = [
            _bounded_list(option, min_items, max_items) if option is kind.list_option else option
            for option in kind.options
        ]
        return UnionKind(options, kind.label)
    raise TypeError(f"min_items and max_items bound a list, not a {kind.label}")


def _kind(hint: Any) -> Kind:
    hint, spec = _spec_of(hint)
    origin = get_origin(hint)
    if hint is Any:
        return AnyKind()
    if hint in SCALARS:
        return SCALARS[hint]
    if origin is Literal:
        return LiteralKind(get_args(hint))
    if origin in (Union, types.UnionType):
        return UnionKind([_kind(arg) for arg in get_args(hint)], spec.expected if spec else None)
    if origin is list:
        (item,) = get_args(hint)
        return ListKind(_kind(item))
    if origin is dict:
        key, value = get_args(hint)
        if key is not str:
            raise TypeError(f"dict keys must be str in chat types, not {key!r}")
        return DictKind(_kind(value))
    if isinstance(hint, type) and hasattr(hint, "_layout"):
        return ClassKind(hint)
    raise TypeError(f"unsupported type in a chat type: {hint!r}")


# ---------------------------------------------------------------------------------------------
# Layout: everything about a class, worked out once


@dataclass
class FieldLayout:
    name: str
    kind: Kind
    nullable: bool
    spec: Spec
    default: Any  # MISSING when none (or a factory)
    has_factory: bool


class Layout:
    """What from_dict, _check, to_dict and the schema need to know about a class."""

    def __init__(self, cls: type) -> None:
        hints = get_type_hints(cls, include_extras=True)
        specs = fields(cls)  # fields() leaves out ClassVar pseudo-fields
        own = set(inspect.get_annotations(cls))
        # A subclass's own fields first (ChatRequest: messages, then the parameters).
        ordered = [s for s in specs if s.name in own] + [s for s in specs if s.name not in own]
        self.fields: list[FieldLayout] = []
        for spec in ordered:
            kind, nullable, field_spec = kind_of(hints[spec.name])
            self.fields.append(
                FieldLayout(
                    name=spec.name,
                    kind=kind,
                    nullable=nullable,
                    spec=field_spec,
                    default=spec.default,
                    has_factory=spec.default_factory is not MISSING,
                )
            )
        self.kinds = {f.name: f.kind for f in self.fields}
        # Integer fields: JSON Schema counts 1.0 as an integer, so from_dict takes it as 1.
        self.integers = tuple(
            f.name
            for f in self.fields
            if isinstance(f.kind, Scalar) and f.kind.json_type == "integer"
        )
        self.names = tuple(f.name for f in self.fields)
        self.unknown_keys = getattr(cls, "_unknown_keys", "ignore")
        self.ignored_keys: frozenset[str] = getattr(cls, "_server_keys", frozenset())
        # "inline": `extra` holds the object's other keys; a key named "extra" is one of them.
        self.known = frozenset(self.names) - ({"extra"} if self.unknown_keys == "inline" else set())
        # Plain defaults are immutable (dataclasses demand a factory otherwise): safe to share.
        self.defaults = {f.name: None if f.default is MISSING else f.default for f in self.fields}
        self.factories = tuple(
            (spec.name, spec.default_factory)
            for spec in ordered
            if spec.default_factory is not MISSING
        )
        # Keys a dict must have: no default, or declared required.
        self.required = tuple(
            f.name
            for f in self.fields
            if f.spec.required or (f.default is MISSING and not f.has_factory)
        )
        # (name, kind, nullable, quick test): the quick test alone decides for plain kinds.
        self.checks = tuple((f.name, f.kind, f.nullable, f.kind.accepts) for f in self.fields)
        self.checks_by_name = {check[0]: check for check in self.checks}
        for f in self.fields:  # from_dict leaves defaults unchecked: they must be valid
            if f.default is not MISSING and not (
                f.nullable if f.default is None else f.kind.accepts(f.default)
            ):
                raise TypeError(f"{cls.__name__}.{f.name}: the default {f.default!r} is invalid")
        self.nested = tuple((f.name, f.kind) for f in self.fields if f.kind.nested)
        # Fields `null` may stand for in a request: not nullable, with a plain default.
        self.null_means_default = frozenset(
            f.name
            for f in self.fields
            if getattr(cls, "_null_means_default", False)
            and not f.nullable
            and f.default is not MISSING
            and f.default is not None
        )


# ---------------------------------------------------------------------------------------------
# JSON Schema


def object_schema(cls: type[_ChatData], stack: tuple[type, ...] = ()) -> dict[str, Any]:
    """The JSON Schema of a chat type, generated from its layout."""
    if stack.count(cls) >= SCHEMA_RECURSION_DEPTH:
        return {"type": "object", "title": cls.__name__}
    stack = (*stack, cls)
    layout = cls._layout()
    properties = {}
    for f in layout.fields:
        if f.name == "extra" and layout.unknown_keys == "inline":
            continue  # its keys are the object's own: allowed by the open object
        schema = f.kind.schema(stack)
        if f.nullable or f.name in layout.null_means_default:
            schema = nullable(schema)
        if f.default is not MISSING:
            schema["default"] = f.default
        if f.spec.description:
            schema["description"] = f.spec.description
        properties[f.name] = schema
    schema = {"type": "object", "title": cls.__name__}
    doc = _docstring(cls)
    if doc:
        schema["description"] = doc
    schema["properties"] = properties
    if layout.required:
        schema["required"] = list(layout.required)
    schema.update(getattr(cls, "_schema_rules", {}))
    return schema


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if not schema:
        return schema
    if "anyOf" in schema:
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    if isinstance(schema.get("type"), str) and "enum" not in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _docstring(cls: type) -> str:
    doc = cls.__dict__.get("__doc__") or ""
    if doc.startswith(f"{cls.__name__}("):  # the one dataclass writes
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())
