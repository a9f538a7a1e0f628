"""Per-key limits, counted in a store shared by every worker process and every host.

A key may have requests per minute, tokens per minute and a monthly token budget (`ApiKey`).
`check(key)` runs before a chat request starts: it counts the request and refuses it (429,
`RateLimited` / `QuotaExhausted`, with `retry_after`) when the key is over a limit. Tokens are
known only when the answer is done: `record_tokens(key, n)` counts them then, so a request that
starts under the token limit may take the key past it (the next one waits).
`count_request(subject, limit=, period=)` is the same request count for any subject and period
(the global `CHATMODELS_THROTTLE_RATE`, `api/throttling.py`).

Minute limits use a sliding window (Cloudflare's "sliding window counter"): a count per fixed
window, and the estimate `previous x (share of the previous window still inside the last
minute) + current`, so a burst across a window edge is not let through twice. The budget is
per calendar month (UTC).

The store is the Redis server of `CACHE_URL` when the default cache is Redis (one pipelined
round trip per check), else the database (`LimitCounter`, atomic upserts). Nothing is written for
keys without limits. A Redis that does not answer lets requests through (logged): a broken cache
must not take the API down.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from django.conf import settings
from django.db import connection

from chatmodels.exceptions import QuotaExhausted, RateLimited
from chatmodels.models import LimitCounter
from chatmodels.selectors import ApiKeyInfo

logger = logging.getLogger(__name__)

MINUTE = 60
# How long a window's count is kept after the window ends: the sliding estimate reads the
# previous window, so a minute count must outlive its minute by one more.
_KEEP_AFTER = MINUTE


@dataclass(frozen=True, slots=True)
class Increment:
    subject: str
    window_start: int
    amount: int
    expires_at: int


# ---------------------------------------------------------------------------------------------
# What the pipeline calls


def check(key: ApiKeyInfo, *, now: float | None = None) -> None:
    """Count one request of `key` and raise if it is over a limit (nothing to do without any)."""
    if not key.has_limits:
        return
    now = time.time() if now is None else now
    minute = _window_start(now, MINUTE)
    rpm, tpm, budget = key.requests_per_minute, key.tokens_per_minute, key.monthly_token_budget
    increments, reads = [], []
    if rpm is not None:
        increments.append(Increment(_subject(key, "rpm"), minute, 1, minute + MINUTE + _KEEP_AFTER))
        reads.append((_subject(key, "rpm"), minute - MINUTE))
    if tpm is not None:
        reads += [(_subject(key, "tpm"), minute), (_subject(key, "tpm"), minute - MINUTE)]
    if budget is not None:
        reads.append((_subject(key, "month"), _month_start(now)))
    counts = store().apply(increments, reads)
    if counts is None:
        return  # the store did not answer (logged): let the request through
    added, read = counts
    read = dict(zip(reads, read, strict=True))
    elapsed = now - minute
    if rpm is not None:
        previous, current = read[(_subject(key, "rpm"), minute - MINUTE)], added[0]
        if _estimate(previous, current, elapsed, MINUTE) > rpm:
            store().apply([Increment(_subject(key, "rpm"), minute, -1, minute + 2 * MINUTE)], [])
            wait = _wait(previous, current - 1, rpm, elapsed, MINUTE)
            raise RateLimited(
                f"API key '{key.name}' is over its limit of {rpm} requests per minute;"
                f" retry in {_seconds(wait)} s",
                retry_after=_seconds(wait),
            )
    if tpm is not None:
        current, previous = (
            read[(_subject(key, "tpm"), minute)],
            read[(_subject(key, "tpm"), minute - MINUTE)],
        )
        if _estimate(previous, current, elapsed, MINUTE) >= tpm:
            wait = _wait(previous, current, tpm, elapsed, MINUTE)
            raise RateLimited(
                f"API key '{key.name}' is over its limit of {tpm} tokens per minute;"
                f" retry in {_seconds(wait)} s",
                retry_after=_seconds(wait),
            )
    if budget is not None and read[(_subject(key, "month"), _month_start(now))] >= budget:
        resets = _next_month_start(now)
        raise QuotaExhausted(
            f"API key '{key.name}' has used its monthly budget of {budget} tokens; it renews"
            f" on {datetime.fromtimestamp(resets, timezone.utc):%Y-%m-%d} (UTC)",
            retry_after=_seconds(resets - now),
        )


def record_tokens(key: ApiKeyInfo | None, tokens: int, *, now: float | None = None) -> None:
    """Count the prompt + completion tokens of a finished request against `key`'s limits."""
    if key is None or tokens <= 0:
        return
    tpm, budget = key.tokens_per_minute, key.monthly_token_budget
    if tpm is None and budget is None:
        return
    now = time.time() if now is None else now
    increments = []
    if tpm is not None:
        minute = _window_start(now, MINUTE)
        increments.append(
            Increment(_subject(key, "tpm"), minute, tokens, minute + MINUTE + _KEEP_AFTER)
        )
    if budget is not None:
        increments.append(
            Increment(
                _subject(key, "month"), _month_start(now), tokens, _next_month_start(now) + MINUTE
            )
        )
    store().apply(increments, [])


def count_request(subject: str, *, limit: int, period: int, now: float | None = None) -> float:
    """Count one request of `subject` against `limit` per `period` seconds (sliding window).

    Returns 0 when it is let through, else the seconds to wait (and it is not counted).
    """
    now = time.time() if now is None else now
    start = _window_start(now, period)
    counts = store().apply(
        [Increment(subject, start, 1, start + 2 * period)], [(subject, start - period)]
    )
    if counts is None:
        return 0.0
    (current,), (previous,) = counts
    elapsed = now - start
    if _estimate(previous, current, elapsed, period) <= limit:
        return 0.0
    store().apply([Increment(subject, start, -1, start + 2 * period)], [])
    return max(_wait(previous, current - 1, limit, elapsed, period), 1.0)


# ---------------------------------------------------------------------------------------------
# Windows


def _subject(key: ApiKeyInfo, kind: str) -> str:
    return f"key:{key.id}:{kind}"


def _window_start(now: float, period: int) -> int:
    return int(now // period) * period


def _month_start(now: float) -> int:
    day = datetime.fromtimestamp(now, timezone.utc)
    return int(datetime(day.year, day.month, 1, tzinfo=timezone.utc).timestamp())


def _next_month_start(now: float) -> int:
    day = datetime.fromtimestamp(now, timezone.utc)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return int(datetime(year, month, 1, tzinfo=timezone.utc).timestamp())


def _estimate(previous: int, current: int, elapsed: float, period: int) -> float:
    """The count over the last `period` seconds: the part of the previous window still inside
    it (assuming its requests were spread evenly) plus the current window's."""
    return previous * (period - elapsed) / period + current


def _wait(previous: int, current: int, limit: int, elapsed: float, period: int) -> float:
    """Seconds until one more (request or token) fits: estimate + 1 <= limit."""
    room = limit - current - 1
    if room >= 0:
        if previous <= 0:
            return 0.0
        # The previous window's weight has to fall to `room`.
        return max(0.0, period * (1 - room / previous) - elapsed)
    if limit <= 0:
        return period - elapsed  # nothing is ever let through: say the window's end
    # Not in this window: in the next one, this window's count is the previous one.
    return (period - elapsed) + max(0.0, period * (1 - (limit - 1) / current))


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


# ---------------------------------------------------------------------------------------------
# Stores


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
        added = []
        with connection.cursor() as cursor:
            for item in increments:
                cursor.execute(
                    self._upsert, [item.subject, item.window_start, item.amount, item.expires_at]
                )
                added.append(cursor.fetchone()[0])
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
