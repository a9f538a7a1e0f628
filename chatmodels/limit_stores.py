"""The shared store of the per-key limits (`chatmodels.limits`): counts per subject and window.

The Redis server of `CACHE_URL` when the default cache is Redis (one pipelined MULTI/EXEC round
trip per call), else the database (`LimitCounter` rows, atomic upserts that return the new count;
SQLite ≥ 3.35 and PostgreSQL alike). Monthly budgets are always counted in the database, so a
restart of the cache forgets no spend. `apply(increments, reads)` adds the increments (a negative
amount gives back) and reads counts, in one go, and answers the counts after the increments and
the counts read.

A store has `CHATMODELS_LIMITS_TIMEOUT` seconds to answer (Redis: its socket timeouts; SQLite:
its busy timeout; PostgreSQL: the lock and statement timeouts of the transaction). One that does
not, or fails, makes `apply` answer None; after 3 such failures in a row it is not asked again for
`CHATMODELS_LIMITS_RETRY_SECONDS` (a circuit breaker: a dead store costs a request microseconds,
not a timeout); then one caller tries it again while the others still get None. The first
failure and the recovery are logged, not every request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import DatabaseError, connection, transaction

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

    errors = (DatabaseError,)

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
        """Raises DatabaseError when the database does not answer in time."""
        with _short_lock_waits():
            return self._apply(increments, reads)

    def _apply(
        self, increments: Sequence[Increment], reads: Sequence[tuple[str, int]]
    ) -> tuple[list[int], list[int]]:
        added = [0] * len(increments)
        # One transaction (one commit, not one per count), its rows locked in one order so that
        # two processes changing the same counts wait for each other instead of deadlocking.
        with transaction.atomic(), connection.cursor() as cursor:
            _short_statements()
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

        self.errors = (redis.RedisError, OSError)
        timeout = settings.CHATMODELS_LIMITS_TIMEOUT
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        self._prefix = f"{key_prefix}:chatmodels:limit:" if key_prefix else "chatmodels:limit:"

    def apply(
        self, increments: Sequence[Increment], reads: Sequence[tuple[str, int]]
    ) -> tuple[list[int], list[int]]:
        """Raises one of `errors` when Redis does not answer in time."""
        now = int(time.time())
        pipe = self._client.pipeline(transaction=True)
        for item in increments:
            name = self._name(item.subject, item.window_start)
            pipe.set(name, 0, ex=max(1, item.expires_at - now), nx=True)
            pipe.incrby(name, item.amount)
        if reads:
            pipe.mget([self._name(subject, start) for subject, start in reads])
        results = pipe.execute()
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


def database_store() -> DatabaseStore:
    found = _stores.get(("database",))
    if found is None:
        with _stores_lock:
            found = _stores.setdefault(("database",), DatabaseStore())
    assert isinstance(found, DatabaseStore)
    return found


Counts = tuple[list[int], list[int]]


def apply(increments: Sequence[Increment], reads: Sequence[tuple[str, int]]) -> Counts | None:
    """Add `increments` and read `reads` in the store (monthly counts: in the database); the
    counts after the increments and those read, or None when a store does not answer (nothing
    is then changed)."""
    main = store()
    if isinstance(main, DatabaseStore):
        return _guarded(main, increments, reads)
    durable = [i for i, item in enumerate(increments) if _durable(item.subject)]
    durable_reads = [i for i, read in enumerate(reads) if _durable(read[0])]
    if not durable and not durable_reads:
        return _guarded(main, increments, reads)
    rest = [i for i in range(len(increments)) if i not in set(durable)]
    rest_reads = [i for i in range(len(reads)) if i not in set(durable_reads)]
    database = database_store()
    first = _guarded(database, [increments[i] for i in durable], [reads[i] for i in durable_reads])
    if first is None:
        return None
    second: Counts | None = ([], [])
    if rest or rest_reads:
        second = _guarded(main, [increments[i] for i in rest], [reads[i] for i in rest_reads])
    if second is None:
        # Take back what the database counted: all or nothing, so that a retry counts once.
        taken_back = [replace(increments[i], amount=-increments[i].amount) for i in durable]
        if taken_back and _guarded(database, taken_back, []) is None:
            logger.error("limits: could not take back %s monthly counts", len(taken_back))
        return None
    added, read = [0] * len(increments), [0] * len(reads)
    for indexes, values, into in (
        (durable, first[0], added),
        (durable_reads, first[1], read),
        (rest, second[0], added),
        (rest_reads, second[1], read),
    ):
        for index, value in zip(indexes, values, strict=True):
            into[index] = value
    return added, read


def _durable(subject: str) -> bool:
    return subject.endswith(":month")


class _Breaker:
    """Whether a store failed within the last CHATMODELS_LIMITS_RETRY_SECONDS (`OPEN_AFTER`
    times in a row: one slow answer under load does not refuse every request for seconds)."""

    OPEN_AFTER = 3

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open_until = 0.0  # time.monotonic() until which the store is not asked
        self.trying = False  # one caller is trying the store again
        self.failing = False
        self.failures = 0  # in a row

    def allows(self) -> bool:
        if not self.failing:
            return True
        now = time.monotonic()
        with self.lock:
            if now < self.open_until or self.trying:
                return False
            self.trying = True
            return True

    def failed(self, name: str, error: BaseException) -> None:
        with self.lock:
            self.trying = False
            self.failures += 1
            if self.failures < self.OPEN_AFTER:
                logger.warning("the limits store (%s) did not answer once: %s", name, error)
                return
            self.open_until = time.monotonic() + settings.CHATMODELS_LIMITS_RETRY_SECONDS
            if not self.failing:
                self.failing = True
                logger.error(
                    "the limits store (%s) did not answer: %s; requests of keys with limits are"
                    " %s until it does (asked again every %s s)",
                    name,
                    error,
                    "let through uncounted" if settings.CHATMODELS_LIMITS_FAIL_OPEN else "refused",
                    settings.CHATMODELS_LIMITS_RETRY_SECONDS,
                )

    def succeeded(self, name: str) -> None:
        if self.failures:
            with self.lock:
                was_failing, self.failing, self.trying, self.failures = (
                    self.failing,
                    False,
                    False,
                    0,
                )
            if was_failing:
                logger.warning("the limits store (%s) answers again", name)


_breakers: dict[int, _Breaker] = {}


def _guarded(
    target: DatabaseStore | RedisStore,
    increments: Sequence[Increment],
    reads: Sequence[tuple[str, int]],
) -> Counts | None:
    breaker = _breakers.get(id(target))
    if breaker is None:
        breaker = _breakers.setdefault(id(target), _Breaker())
    if not breaker.allows():
        return None
    name = "Redis" if isinstance(target, RedisStore) else "database"
    try:
        counts = target.apply(increments, reads)
    except target.errors as error:
        breaker.failed(name, error)
        return None
    breaker.succeeded(name)
    return counts


def reset_breakers() -> None:
    """Forget past failures (tests: a fresh start each)."""
    _breakers.clear()


@contextlib.contextmanager
def _short_lock_waits() -> Iterator[None]:
    """SQLite waits at most CHATMODELS_LIMITS_TIMEOUT for its write lock (its busy timeout, set
    on the raw connection: no statement in the query log)."""
    timeout_ms = max(1, int(settings.CHATMODELS_LIMITS_TIMEOUT * 1000))
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        raw = connection.connection
        default_ms = int(connection.settings_dict.get("OPTIONS", {}).get("timeout", 5) * 1000)
        raw.execute(f"PRAGMA busy_timeout = {timeout_ms}")
        try:
            yield
        finally:
            raw.execute(f"PRAGMA busy_timeout = {default_ms}")
        return
    yield


def _short_statements() -> None:
    """In a PostgreSQL transaction: it waits at most CHATMODELS_LIMITS_TIMEOUT for a lock or a
    statement (set on the raw connection: no statement in the query log)."""
    if connection.vendor != "postgresql":
        return
    timeout_ms = max(1, int(settings.CHATMODELS_LIMITS_TIMEOUT * 1000))
    with connection.connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
        cursor.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
