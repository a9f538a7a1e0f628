"""The lookups every chat request makes (its API key, the version it means, whether the key may
call that model), remembered in this process for at most CHATMODELS_LOOKUP_CACHE_SECONDS (1 s).

In the steady state a request asks the database nothing: each answer is asked once per second
per process at most, so an alias move, a new version, a revoked key or a changed limit is seen by
every process of every host within that second, and at once in the process that made the change
(any save or delete of a key, model, version or alias forgets everything remembered here).
Answers that something does not exist are remembered too, so that a client sending unknown keys
or names costs the database no more than one that sends good ones. At most MAX_ENTRIES answers of
each kind are kept (a flood of distinct unknown keys pushes out the oldest).

The coroutines ask the database in a thread when they must (`in_thread`); the plain functions
are for synchronous callers (DRF's authentication in a synchronous view).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from chatmodels import selectors
from chatmodels.exceptions import ChatModelsError
from chatmodels.selectors import ApiKeyInfo, ResolvedVersion

T = TypeVar("T")

MAX_ENTRIES = 10_000
_MISSING = object()


class _Recent:
    """Answers by key, each for the cache's time; a raised ChatModelsError is an answer too."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable) -> Any:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return _MISSING
        value = entry[1]
        if isinstance(value, ChatModelsError):
            raise copy.copy(value)
        return value

    def put(self, key: Hashable, value: Any, generation: int) -> None:
        seconds = settings.CHATMODELS_LOOKUP_CACHE_SECONDS
        if seconds <= 0 or generation != _generation:  # off, or forgotten while asked
            return
        entries = self._entries
        while len(entries) >= MAX_ENTRIES:
            entries.pop(next(iter(entries)), None)
        entries.pop(key, None)  # re-inserted last: the oldest are the first to go
        entries[key] = (time.monotonic() + seconds, value)

    def clear(self) -> None:
        self._entries.clear()


_keys = _Recent()
_versions = _Recent()
_allowed = _Recent()
_generation = 0


def forget(**_signal: Any) -> None:
    """Forget every remembered answer (a receiver of the models' save and delete signals)."""
    global _generation
    _generation += 1
    for recent in (_keys, _versions, _allowed):
        recent.clear()


def _asked(recent: _Recent, key: Hashable, ask: Callable[[], T]) -> T:
    generation = _generation
    try:
        value = ask()
    except ChatModelsError as error:
        recent.put(key, error, generation)
        raise
    recent.put(key, value, generation)
    return value


async def _asked_async(recent: _Recent, key: Hashable, ask: Callable[[], T]) -> T:
    value = recent.get(key)
    if value is _MISSING:
        value = await in_thread(_asked, recent, key, ask)
    return value


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a thread, for work that may wait on the database or the limits
    store. With a connection pool, that thread's connection goes back to the pool as soon as the
    work is done, so a request that then waits on its model for minutes holds none."""
    return await sync_to_async(_releasing_the_connection)(function, *args)


def _releasing_the_connection(function: Callable[..., T], *args: Any) -> T:
    try:
        return function(*args)
    finally:
        # Without a pool (SQLite) each thread keeps its own connection, which costs nothing.
        if connection.settings_dict.get("OPTIONS", {}).get("pool") and not (
            connection.in_atomic_block
        ):
            connection.close()


def api_key(raw_key: str) -> ApiKeyInfo | None:
    """The active key with this raw value, or None (`selectors.get_api_key`)."""
    value = _keys.get(raw_key)
    if value is _MISSING:
        value = _asked(_keys, raw_key, lambda: selectors.get_api_key(raw_key))
    return value


async def api_key_async(raw_key: str) -> ApiKeyInfo | None:
    return await _asked_async(_keys, raw_key, lambda: selectors.get_api_key(raw_key))


async def resolve_version(
    *, name: str, version: int | None = None, alias: str | None = None
) -> ResolvedVersion:
    """`selectors.resolve_version`, remembered (its not-found errors too)."""
    return await _asked_async(
        _versions,
        (name, version, alias),
        lambda: selectors.resolve_version(name=name, version=version, alias=alias),
    )


async def key_allows_model_named(key: ApiKeyInfo, name: str) -> bool:
    """`selectors.key_allows_model_named`: no lookup for a key that may call every model."""
    if not key.restricted:
        return True
    return await _asked_async(
        _allowed, (key.id, name), lambda: selectors.key_allows_model_named(key, name)
    )
