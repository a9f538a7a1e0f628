"""Strict JSON in and out: no NaN or Infinity, no lone UTF-16 surrogates, valid UTF-8.

Python's `json` reads `NaN`, `Infinity` and `"\\ud800"` and writes them back; the OpenAI API
refuses them and strict parsers (JavaScript's `JSON.parse` for NaN, Rust's serde_json for lone
surrogates…) fail on them. A request carrying one is a 400 naming the field; a model answer
carrying one (or anything `json` cannot write) is a 502 naming the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from chatmodels.exceptions import InvalidModelOutput, InvalidRequest

# A lone surrogate in a str; after decoding, a valid pair is one code point past U+FFFF.
_SURROGATE = re.compile("[\ud800-\udfff]")
# The escape of a surrogate (`\ud83d` is also half of an emoji's pair: only a hint to look).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _NotFinite(ValueError):
    """The decoder met `NaN`, `Infinity`, `-Infinity` or a number too large for a float."""


def _refuse_constant(text: str) -> float:
    raise _NotFinite(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999 is a valid JSON number that Python reads as inf
        raise _NotFinite(text)
    return value


# Built once: json.loads(...) with hooks builds a new decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


class _Token(str):
    """A refused number as it was written, kept in place to find its path."""


def _float_or_token(text: str) -> float | _Token:
    value = float(text)
    return _Token(text) if math.isinf(value) else value


def loads_json(text: str | bytes) -> Any:
    """JSON text as Python values; ValueError for what is not JSON, NaN and infinities included
    (a lone surrogate, which JSON can escape, is kept)."""
    return _DECODER.decode(text if isinstance(text, str) else text.decode())


def loads_request(raw: bytes) -> Any:
    """A request body as JSON; InvalidRequest (400) naming the field for anything not strict."""
    try:
        text = raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError as error:
        raise InvalidRequest(
            f"the request body is not valid JSON: not {error.encoding.upper()} text"
            f" ({error.reason} at byte {error.start})"
        ) from None
    try:
        value = _DECODER.decode(text)
    except _NotFinite as refused:
        path, token = _locate_not_finite(text) or ("", str(refused))
        raise InvalidRequest(
            f"{path or 'the request body'}: expected a finite number, got {token}"
            " (NaN and Infinity are not JSON)",
            param=path or None,
        ) from None
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply") from None
    except ValueError as error:
        raise InvalidRequest(f"the request body is not valid JSON: {error}") from None
    if _SURROGATE_ESCAPE.search(text):
        located = _find(value, _has_lone_surrogate)
        if located is not None:
            path = located[0]
            raise InvalidRequest(
                f"{path or 'the request body'}: contains a lone UTF-16 surrogate"
                " (half of a pair, without the other half), which is not text",
                param=path or None,
            )
    return value


def _locate_not_finite(text: str) -> tuple[str, str] | None:
    """Where the first NaN/Infinity of `text` is: parsed again, keeping each as a token."""
    try:
        value = json.loads(text, parse_constant=_Token, parse_float=_float_or_token)
    except (RecursionError, ValueError):  # too deep or malformed after the number
        return None
    return _find(value, lambda item: isinstance(item, _Token))


def dumps_model_output(value: Any, *, what: str = "the model's answer") -> bytes:
    """`value` (built from what a model returned) as strict JSON; InvalidModelOutput (502)
    naming the field if it holds anything that is not JSON or a lone surrogate."""
    text = dumps_json_text(value, what=what)
    if "\\ud" in text:  # an escaped surrogate: an emoji's pair, or a lone one
        located = _find(value, _has_lone_surrogate)
        if located is not None:
            raise InvalidModelOutput(
                f"{what} cannot be sent as JSON: {located[0] or 'the answer'}:"
                " contains a lone UTF-16 surrogate, which is not text"
            )
    return text.encode()


def dumps_json_text(value: Any, *, what: str = "the model's answer") -> str:
    """`value` as JSON text (ASCII: a lone surrogate is kept, escaped); InvalidModelOutput naming
    the field if it holds a NaN, an infinity, a key or a value JSON has no form for."""
    try:
        text = json.dumps(value, allow_nan=False)
    except RecursionError:
        raise InvalidModelOutput(f"{what} is nested too deeply to be sent as JSON") from None
    except (TypeError, ValueError) as error:
        located = _find(value, _json_problem)
        if located is None:
            raise InvalidModelOutput(f"{what} cannot be sent as JSON: {error}") from None
        path, problem = located
        raise InvalidModelOutput(
            f"{what} cannot be sent as JSON: {path or 'the answer'}: {problem}"
        ) from None
    return text


# ---------------------------------------------------------------------------------------------
# Finding what is wrong (only once something is): the first value or key that fails a check.


def _has_lone_surrogate(item: Any) -> bool:
    return isinstance(item, str) and _SURROGATE.search(item) is not None


def _json_problem(item: Any) -> str | None:
    if isinstance(item, _Cycle):
        return "a circular reference"
    if isinstance(item, _BadKey):
        return f"a {type(item.key).__name__} key (JSON keys are strings)"
    if isinstance(item, float) and not math.isfinite(item):
        return f"{item!r} is not a JSON number (only finite numbers are)"
    if item is None or isinstance(item, str | int | float | list | tuple | dict):
        return None
    return f"{type(item).__name__} is not JSON-serializable"


def _find(value: Any, check: Callable[[Any], Any]) -> tuple[str, Any] | None:
    """(path, what `check` said) of the first value or dict key it flags, or None."""
    for path, item in _walk(value):
        flagged = check(item)
        if flagged:
            return path, item if flagged is True else flagged
    return None


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every value and dict key in `value`, with a path like `messages[0].content`; iterative
    (nesting deeper than the recursion limit is fine) and safe on reference cycles."""
    stack: list[tuple[str, Any]] = [("", value)]
    seen: set[int] = set()
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict | list | tuple):
            if id(item) in seen:
                yield path, _Cycle()
                continue
            seen.add(id(item))
        yield path, item
        if isinstance(item, dict):
            children = []
            for key, child in item.items():
                key_path = _join(path, key)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    yield key_path, _BadKey(key)
                else:
                    yield key_path, key
                children.append((key_path, child))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(f"{path}[{i}]", child) for i, child in enumerate(item)]))


class _Cycle:
    """Stands for a container met again inside itself."""


class _BadKey:
    """Stands for a dict key that JSON cannot hold."""

    def __init__(self, key: Any) -> None:
        self.key = key


def _join(path: str, key: Any) -> str:
    # Never echo a surrogate or a control character back.
    plain = isinstance(key, str) and key.isascii() and key.isprintable()
    name = key if plain else ascii(key)
    return f"{path}.{name}" if path else name
