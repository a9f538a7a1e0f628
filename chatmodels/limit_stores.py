"""The shared store of the per-key limits (`chatmodels.limits`): counts per subject and window.

The Redis server of `CACHE_URL` when the default cache is Redis (one pipelined MULTI/EXEC round
trip per call), else the database (`LimitCounter` rows, atomic upserts that return the new count;
SQLite ≥ 3.35 and PostgreSQL alike). `apply(increments, reads)` adds the increments (a negative
amount gives back) and reads counts, in one go, and answers the counts after the increments and
the counts read. A Redis that does not answer makes it answer None (logged): a broken cache must
not take the API down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from chatmodels.models import LimitCounter

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Increment:
    subject: str
    window_start: int
    amount: int
    expires_at: int


class DatabaseStore:
    """`LimitCounter` rows, changed by atomic upserts (SQLite ≥ 3.35 and PostgreSQL alike)."""

    PRUNE_EVERY = 60.0  # seconds between deletions of expired rows, per process

    def __init__(self) -> None:
        quote = connection.ops.quote_name
        table = quote(LimitCounter._meta.db_table)
        subject, start, count, expires = (
            quote(name) for name in ("subject", "window_start", "count", "expires_at")
        )
        self._upsert = (
            f"INSERT INTO {table} ({subject}, {start}, {count}, {expires})"
            f" VALUES (%s, %s, %s, %s) ON CONFLICT ({subject}, {start})"
            f" DO UPDATE SET {count} = {table}.{count} + excluded.{count} RETURNING {count}"
        )
        self._select = f"SELECT {subject}, {start}, {count} FROM {table} WHERE {subject} IN "
        self._prune = f"DELETE FROM {table} WHERE {expires} < %s"
        self._pruned_at = 0.0

    def apply(
        self, increments: Sequence[Increment], reads: Sequence[tuple[str, int]]
    ) -> tuple[list[int], list[int]]:
        added = [0] * len(increments)
        # One transaction (one commit, not one per count), its rows locked in one order so that
        # two processes changing the same counts wait for each other instead of deadlocking.
        with transaction.atomic(), connection.cursor() as cursor:
            for index in sorted(
                range(len(increments)),
                key=lambda i: (increments[i].subject, increments[i].window_start),
            ):
                item = increments[index]
                cursor.execute(
                    self._upsert, [item.subject, item.window_start, item.amount, item.expires_at]
                )
                added[index] = cursor.fetchone()[0]
            found = {}
            if reads:
                subjects = sorted({subject for subject, _ in reads})
                cursor.execute(self._select + f"({', '.join(['%s'] * len(subjects))})", subjects)
                found = {(subject, start): count for subject, start, count in cursor.fetchall()}
            now = time.time()
            if increments and now - self._pruned_at > self.PRUNE_EVERY:
                self._pruned_at = now
                cursor.execute(self._prune, [int(now)])
        return added, [found.get(read, 0) for read in reads]


class RedisStore:
    """Keys `<prefix>chatmodels:limit:<subject>:<window start>` on the cache's Redis server:
    SET NX with expiry, then INCRBY, in one MULTI/EXEC pipeline with the reads (MGET)."""

    def __init__(self, url: str, key_prefix: str = "") -> None:
        import redis  # only when the cache is Redis

        self._errors = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self._prefix = f"{key_prefix}:chatmodels:limit:" if key_prefix else "chatmodels:limit:"

    def apply(
        self, increments: Sequence[Increment], reads: Sequence[tuple[str, int]]
    ) -> tuple[list[int], list[int]] | None:
        now = int(time.time())
        try:
            pipe = self._client.pipeline(transaction=True)
            for item in increments:
                name = self._name(item.subject, item.window_start)
                pipe.set(name, 0, ex=max(1, item.expires_at - now), nx=True)
                pipe.incrby(name, item.amount)
            if reads:
                pipe.mget([self._name(subject, start) for subject, start in reads])
            results = pipe.execute()
        except self._errors as error:
            logger.error("the limits store (Redis) did not answer: %s; request let through", error)
            return None
        added = [int(results[2 * i + 1]) for i in range(len(increments))]
        values = results[-1] if reads else []
        return added, [int(value) if value is not None else 0 for value in values]

    def _name(self, subject: str, window_start: int) -> str:
        return f"{self._prefix}{subject}:{window_start}"


_REDIS_BACKENDS = ("django.core.cache.backends.redis.RedisCache", "django_redis.cache.RedisCache")
_stores: dict[tuple, DatabaseStore | RedisStore] = {}
_stores_lock = threading.Lock()


def store() -> DatabaseStore | RedisStore:
    """The store the default cache setting names (built once per distinct setting)."""
    cache = settings.CACHES["default"]
    location = cache.get("LOCATION") or ""
    if isinstance(location, (list, tuple)):
        location = location[0] if location else ""  # Django writes to the first server
    signature = (cache["BACKEND"], str(location).split(",")[0], cache.get("KEY_PREFIX", ""))
    found = _stores.get(signature)
    if found is None:
        with _stores_lock:
            found = _stores.get(signature)
            if found is None:
                if signature[0] in _REDIS_BACKENDS:
                    found = RedisStore(signature[1], signature[2])
                else:
                    found = DatabaseStore()
                _stores[signature] = found
    return found
