"""Usage accounting: requests, tokens, errors and latency per model, version, API key and hour.

The chat pipeline calls `record()` once at the end of each request. It only queues the request
in this process's memory (no database work, no lock on the request path); a background thread
per process adds the queue up into counters per bucket and writes them every
`CHATMODELS_USAGE_FLUSH_SECONDS` as one batch of additive upserts (`INSERT … ON CONFLICT … DO
UPDATE SET requests = requests + excluded.requests …`), so any number of worker processes and
hosts add into the same `UsageBucket` rows, and there is never a row per request. What is left
when the process stops (SIGTERM, SIGINT, a normal exit) is written at exit
(`background.run_in_background`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from datetime import datetime, timezone

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from chatmodels.background import run_in_background
from chatmodels.models import UsageBucket
from chatmodels.selectors import ApiKeyInfo, ResolvedVersion

logger = logging.getLogger(__name__)

# The counters of a bucket, in the order of `_COLUMNS`' tail; the last one is a maximum.
SUMMED = UsageBucket.SUMMED_FIELDS
_REQUESTS, _ERRORS = 0, 1
_PROMPT, _COMPLETION, _LATENCY_SUM, _LATENCY_MAX = 6, 7, 8, 9
_COLUMNS = ("model_id", "version", "api_key_id", "hour", *SUMMED, "latency_ms_max")
_BATCH = 500  # buckets per statement: 7,000 parameters, well under every backend's limit

# (model id, version number, key id or None, hours since the epoch) -> counters
Bucket = tuple[int, int, "int | None", int]


def error_column(status: int) -> str | None:
    """The error counter a response status goes to (None: not an error)."""
    if status < 400:
        return None
    if status in (429, 503):
        return "rejected"  # limits and capacity: the client may retry
    if status == 504:
        return "timeouts"
    if status >= 500:
        return "model_errors"
    return "invalid_requests"


# By error_column(status), read only for an error status (so never with None).
_ERROR_INDEX: dict[str | None, int] = {name: SUMMED.index(name) for name in SUMMED}


class _State:
    """This process's counters and flusher thread (made anew in a forked child)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # `pending`, and taking requests off `queue`
        self.flush_lock = threading.Lock()
        self.queue: deque[tuple] = deque()  # requests recorded and not added up yet
        self.pending: dict[Bucket, list[int]] = {}
        self.started = False
        self.stop = threading.Event()


_state = _State()


def _forget_parent_state() -> None:
    # A forked child starts with no counts (the parent writes its own) and fresh locks.
    global _state
    _state = _State()


os.register_at_fork(after_in_child=_forget_parent_state)


def record(
    version: ResolvedVersion,
    key: ApiKeyInfo | None,
    *,
    seconds: float,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    status: int = 200,
) -> None:
    """Count one request that `version` answered (or failed) for `key`.

    `seconds` is how long it took, `prompt_tokens` and `completion_tokens` the usage the model
    reported, `status` the HTTP status it was answered with.
    """
    if not settings.CHATMODELS_USAGE:
        return
    state = _state
    queue = state.queue
    queue.append(
        (
            version.model_id,
            version.version,
            key.id if key else None,
            time.time(),
            seconds,
            prompt_tokens,
            completion_tokens,
            status,
        )
    )
    if len(queue) >= _ADD_UP_AT:
        with state.lock:
            _add_up(state)
    if not state.started:
        _start(state)


# A request is queued as it ends (a deque: atomic, no lock) and added up per bucket in one tight
# loop by the writer, a few microseconds less per request than adding it up as it ends.
_ADD_UP_AT = 4096  # requests: a queue this long is added up by the request that fills it


def _add_up(state: _State) -> None:
    """Move the queued requests into the counters of their buckets (`state.lock` held)."""
    queue, pending = state.queue, state.pending
    for _ in range(len(queue)):
        model_id, number, key_id, at, seconds, prompt, completion, status = queue.popleft()
        bucket = (model_id, number, key_id, int(at) // 3600)
        counts = pending.get(bucket)
        if counts is None:
            counts = pending[bucket] = [0] * (len(SUMMED) + 1)
        counts[_REQUESTS] += 1
        if status >= 400:
            counts[_ERRORS] += 1
            counts[_ERROR_INDEX[error_column(status)]] += 1
        counts[_PROMPT] += prompt
        counts[_COMPLETION] += completion
        latency_ms = int(seconds * 1000)
        counts[_LATENCY_SUM] += latency_ms
        if latency_ms > counts[_LATENCY_MAX]:
            counts[_LATENCY_MAX] = latency_ms


def _start(state: _State) -> None:
    """Once per process: the exit hooks and, unless the interval is 0, the writer thread."""
    with state.flush_lock:
        if state.started:
            return
        state.started = True
    run_in_background(
        "usage",
        flush,
        every=settings.CHATMODELS_USAGE_FLUSH_SECONDS,
        at_exit=flush_at_exit,
        stop=state.stop,
    )


def pending() -> dict[Bucket, list[int]]:
    """A copy of what this process has counted and not written yet (for tests and tools)."""
    with _state.lock:
        _add_up(_state)
        return {bucket: list(counts) for bucket, counts in _state.pending.items()}


def discard() -> None:
    """Forget what has not been written (tests: nothing carried from one test to the next)."""
    with _state.lock:
        _state.queue.clear()
        _state.pending.clear()


def flush() -> int:
    """Write what this process has counted; returns the number of buckets written.

    If the database fails, the counts go back into memory for the next flush. A bucket the
    database refuses for good (its API key was deleted meanwhile) is dropped with a warning.
    """
    state = _state
    with state.flush_lock:
        with state.lock:
            _add_up(state)
            batch, state.pending = state.pending, {}
        if not batch:
            return 0
        try:
            written = _write(batch)
        except Exception:
            _merge_back(state, batch)
            raise
        finally:
            if not connection.in_atomic_block:
                connection.close()  # back to the pool, or closed: nothing held until next time
        return written


def flush_at_exit() -> None:
    _state.stop.set()
    try:
        written = flush()
    except Exception:
        lost = sum(counts[_REQUESTS] for counts in _state.pending.values())
        logger.exception("usage: the last write failed at exit; %s requests not counted", lost)
    else:
        if written:
            logger.info("usage: wrote %s buckets at exit", written)


def _merge_back(state: _State, batch: dict[Bucket, list[int]]) -> None:
    with state.lock:
        for bucket, counts in batch.items():
            current = state.pending.get(bucket)
            if current is None:
                state.pending[bucket] = counts
                continue
            for index in range(_LATENCY_MAX):
                current[index] += counts[index]
            current[_LATENCY_MAX] = max(current[_LATENCY_MAX], counts[_LATENCY_MAX])


def _write(batch: dict[Bucket, list[int]]) -> int:
    rows = [_row(bucket, counts) for bucket, counts in batch.items()]
    written = 0
    for start in range(0, len(rows), _BATCH):
        chunk = rows[start : start + _BATCH]
        try:
            _upsert(chunk)
            written += len(chunk)
        except IntegrityError:
            written += _upsert_one_by_one(chunk)
    return written


def _upsert_one_by_one(rows: list[tuple]) -> int:
    written = 0
    for row in rows:
        try:
            _upsert([row])
            written += 1
        except IntegrityError as error:
            logger.warning("usage: dropped the counts of a bucket the database refused: %s", error)
    return written


def _row(bucket: Bucket, counts: list[int]) -> tuple:
    model_id, version, key_id, hour = bucket
    start = datetime.fromtimestamp(hour * 3600, tz=timezone.utc)
    return (
        model_id,
        version,
        key_id,
        connection.ops.adapt_datetimefield_value(start),
        *counts,
    )


def _upsert(rows: list[tuple]) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_upsert_sql(len(rows)), [value for row in rows for value in row])


def _upsert_sql(count: int) -> str:
    """One statement for SQLite (3.24+) and PostgreSQL: counters add up, the maximum is kept.

    The conflict target is the unique index of `UsageBucket` (its keyless rows have
    COALESCE(api_key_id, 0) = 0).
    """
    quote = connection.ops.quote_name
    table = quote(UsageBucket._meta.db_table)
    columns = ", ".join(quote(name) for name in _COLUMNS)
    row = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    sums = [f"{quote(name)} = {table}.{quote(name)} + excluded.{quote(name)}" for name in SUMMED]
    most = quote("latency_ms_max")
    sums.append(
        f"{most} = CASE WHEN excluded.{most} > {table}.{most}"
        f" THEN excluded.{most} ELSE {table}.{most} END"
    )
    target = (
        f"{quote('model_id')}, {quote('version')}, (COALESCE({quote('api_key_id')}, 0)),"
        f" {quote('hour')}"
    )
    return (
        f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * count)}"
        f" ON CONFLICT ({target}) DO UPDATE SET {', '.join(sums)}"
    )
