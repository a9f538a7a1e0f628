"""What the management commands share: turning domain errors into one-line CommandErrors."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from chatmodels.exceptions import ChatModelsError


@contextmanager
def one_line_errors(flags: dict[str, str] | None = None):
    """Domain errors become `CommandError: <message>` and exit 1, never a traceback (unless
    asked for with `--traceback`: then it goes down to the author's own frames).

    `flags` maps a service's field names to the command's options (`requests_per_minute` to
    `--rpm`): a message about that field names the option the user typed."""
    try:
        yield
    except ChatModelsError as error:
        message = str(error)
        flag = (flags or {}).get(error.param or "")
        if flag is not None and message.startswith(error.param or ""):
            message = flag + message[len(error.param or "") :]
        raise CommandError(message) from error


def add_version_argument(parser, *, required: bool) -> None:
    """VERSION as a positional argument or as `--version N` (which Django's own `--version`,
    printing Django's version, would otherwise take)."""
    for action in list(parser._actions):  # Django's --version, replaced
        if "--version" in action.option_strings:
            parser._handle_conflict_resolve(None, [("--version", action)])
    parser.add_argument(
        "version",
        nargs="?",
        type=int,
        help="the version number" + ("" if required else " (not with --delete)"),
    )
    parser.add_argument(
        "--version",
        dest="version_option",
        type=int,
        metavar="N",
        help="the version number, as an option (same as the positional VERSION)",
    )


def version_of(options: dict[str, Any]) -> int | None:
    positional, option = options["version"], options["version_option"]
    if positional is not None and option is not None and positional != option:
        raise CommandError(f"give the version once: VERSION {positional} or --version {option}")
    return positional if positional is not None else option


def read_json_file(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise CommandError(f"cannot read {what} file {path}: {error.strerror}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise CommandError(f"{what} file {path} is not valid JSON: {error}") from None


def parse_pairs(values: list[str], option: str, form: str = "KEY=VALUE") -> dict[str, str]:
    """`KEY=VALUE` options into a dict, refusing anything else by name (and its `form`)."""
    pairs = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise CommandError(f"{option} expects {form}, got {value!r}")
        pairs[key] = item
    return pairs
