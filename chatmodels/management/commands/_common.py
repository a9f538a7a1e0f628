"""What the management commands share: turning domain errors into one-line CommandErrors."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from chatmodels.exceptions import ChatModelsError


@contextmanager
def one_line_errors():
    """Domain errors become `CommandError: <message>` and exit 1, never a traceback (unless
    asked for with `--traceback`: then it goes down to the author's own frames)."""
    try:
        yield
    except ChatModelsError as error:
        raise CommandError(str(error)) from error


def read_json_file(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise CommandError(f"cannot read {what} file {path}: {error.strerror}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise CommandError(f"{what} file {path} is not valid JSON: {error}") from None


def parse_pairs(values: list[str], option: str) -> dict[str, str]:
    """`KEY=VALUE` options into a dict, refusing anything else by name."""
    pairs = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise CommandError(f"{option} expects KEY=VALUE, got {value!r}")
        pairs[key] = item
    return pairs
