"""Usage accounting: requests, tokens, errors and latency per model, version, API key and hour.

The chat pipeline calls `record()` once at the end of each request. It only queues the request
in this process's memory (no database work, no lock on the request path); a background thread
per process adds the queue up into counters per bucket and writes them every
`CHATMODELS_USAGE_FLUSH_SECONDS` as one batch of additive upserts (`INSERT … ON CONFLICT … DO
UPDATE SET requests = requests + excluded.requests …`), so any number of worker processes and
hosts add into the same `UsageBucket` rows, and there is never a row per request. What is left
when the process stops (SIGTERM, SIGINT, a normal exit) is written at exit
(`background.run_in_background`); a process killed outright (SIGKILL, a crash of the machine)
loses at most what it counted since its last write: `CHATMODELS_USAGE_FLUSH_SECONDS`.

One bucket cannot stop the others being written: when a batch fails for its values, its buckets
are written one by one, and a bucket that fails alone is kept for the next write, then dropped
after `STRIKES` failed writes, with a log line saying what was lost. When the database itself
fails (it is down, or locked), every count not written is kept for the next write.
"""

from __future__ import annotations

import logging
import operator
import time
from collections import deque
from dataclasses import make_dataclass, replace
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction

from chatmodels.background import Accumulator
from chatmodels.exceptions import ErrorKind
from chatmodels.models import UsageBucket
from chatmodels.selectors import ApiKeyInfo, ResolvedVersion

logger = logging.getLogger(__name__)

# A bucket's counters, named as `UsageBucket`'s fields: those that add up across workers and
# hosts (`UsageBucket.SUMMED_FIELDS`), then the largest latency. This one order is that of the
# columns written and of a row's values; the add-up loop names each counter.
SUMMED = UsageBucket.SUMMED_FIELDS
_LARGEST = "latency_ms_max"
COUNTERS = (*SUMMED, _LARGEST)
# Made from COUNTERS, so a type checker cannot see its fields: it is typed as Any.
Counts: Any = make_dataclass("Counts", [(name, int, 0) for name in COUNTERS], slots=True)
_values_of = operator.attrgetter(*COUNTERS)  # a Counts' values, in the order of COUNTERS
_COLUMNS = ("model_id", "version", "api_key_id", "hour", *COUNTERS)
_BATCH = 500  # buckets per statement: 7,000 parameters, well under every backend's limit
# What writing a bucket may raise for its values (PostgreSQL: DataError out of range; SQLite's
# driver: OverflowError past 64 bits); any other DatabaseError means the database is failing.
_VALUE_ERRORS = (DataError, OverflowError, ValueError)
STRIKES = 3  # failed writes of a bucket, alone while others were written, before it is dropped

# (model id, version number, key id or None, hours since the epoch) -> counters
Bucket = tuple[int, int, "int | None", int]


def record(
    version: ResolvedVersion,
    key: ApiKeyInfo | None,
    *,
    seconds: float,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    error: ErrorKind | None = None,
) -> None:
    """Count one request that `version` answered (or failed) for `key`.

    `seconds` is how long it took, `prompt_tokens` and `completion_tokens` the usage the model
    reported, `error` the kind of error it was answered with (None: it was answered).
    """
    if not settings.CHATMODELS_USAGE:
        return
    _buckets.add(
        (
            version.model_id,
            version.version,
            key.id if key else None,
            time.time(),
            seconds,
            prompt_tokens,
            completion_tokens,
            error,
        )
    )


def _add_up(queue: deque, pending: dict[Bucket, Any]) -> None:
    """Move the queued requests into the counters of their buckets (the accumulator's lock
    held)."""
    for _ in range(len(queue)):
        model_id, number, key_id, at, seconds, prompt, completion, error = queue.popleft()
        bucket = (model_id, number, key_id, int(at) // 3600)
        counts = pending.get(bucket)
        if counts is None:
            counts = pending[bucket] = Counts()
        counts.requests += 1
        if error is not None:
            counts.errors += 1
            setattr(counts, error.counter, getattr(counts, error.counter) + 1)
        counts.prompt_tokens += prompt
        counts.completion_tokens += completion
        latency_ms = int(seconds * 1000)
        counts.latency_ms_sum += latency_ms
        if latency_ms > counts.latency_ms_max:
            counts.latency_ms_max = latency_ms


def pending() -> dict[Bucket, Any]:
    """A copy of what this process has counted and not written yet (for tests and tools)."""
    accumulator = _buckets
    with accumulator.lock:
        accumulator.add_up()
        return {bucket: replace(counts) for bucket, counts in accumulator.state.items()}


def discard() -> None:
    """Forget what has not been written (tests: nothing carried from one test to the next)."""
    with _buckets.lock:
        _buckets.queue.clear()
        _buckets.state.clear()


def flush() -> int:
    """Write what this process has counted; returns the number of buckets written.

    If the database fails, the counts go back into memory for the next flush. A bucket the
    database refuses for good (its API key was deleted meanwhile) is dropped with a warning.
    """
    accumulator = _buckets
    with accumulator.write_lock:
        with accumulator.lock:
            accumulator.add_up()
            batch, accumulator.state = accumulator.state, {}
        if not batch:
            return 0
        try:
            written, failed, kept, down = _write(batch)
        except Exception:
            _merge_back(accumulator, batch)
            raise
        finally:
            if not connection.in_atomic_block:
                connection.close()  # back to the pool, or closed: nothing held until next time
        if failed:
            _merge_back(accumulator, _struck(failed))
        if kept:
            _merge_back(accumulator, kept)
        if down is not None:
            raise down
        return written


def flush_at_exit() -> None:
    _buckets.stop.set()
    try:
        written = flush()
    except Exception:
        lost = sum(counts.requests for counts in _buckets.state.values())
        logger.exception("usage: the last write failed at exit; %s requests not counted", lost)
    else:
        if written:
            logger.info("usage: wrote %s buckets at exit", written)


# This process's counters per bucket; a request queues its numbers (`record`).
_buckets: Accumulator[dict[Bucket, Any]] = Accumulator(
    "usage",
    dict,
    add_up=_add_up,
    task=flush,
    every=lambda: settings.CHATMODELS_USAGE_FLUSH_SECONDS,
    at_exit=flush_at_exit,
)


def _merge_back(accumulator: Accumulator, batch: dict[Bucket, Any]) -> None:
    with accumulator.lock:
        pending = accumulator.state
        for bucket, counts in batch.items():
            current = pending.get(bucket)
            if current is None:
                pending[bucket] = counts
                continue
            for name in SUMMED:
                setattr(current, name, getattr(current, name) + getattr(counts, name))
            current.latency_ms_max = max(current.latency_ms_max, counts.latency_ms_max)


def _write(
    batch: dict[Bucket, Any],
) -> tuple[int, dict[Bucket, Any], dict[Bucket, Any], BaseException | None]:
    """Write `batch`. Returns the buckets written, those that failed alone (their values: the
    database answered), those not tried because the database stopped answering, and why."""
    items = list(batch.items())
    written = 0
    failed: dict[Bucket, Any] = {}
    kept: dict[Bucket, Any] = {}
    down: BaseException | None = None
    for start in range(0, len(items), _BATCH):
        chunk = items[start : start + _BATCH]
        if down is not None:
            kept.update(chunk)
            continue
        try:
            _upsert([_row(bucket, counts) for bucket, counts in chunk])
            written += len(chunk)
            continue
        except IntegrityError:
            pass
        except _VALUE_ERRORS:
            pass
        except DatabaseError as error:  # the database itself: keep everything for next time
            down = error
            kept.update(chunk)
            continue
        for bucket, counts in chunk:  # one by one: find the bucket that fails
            if down is not None:
                kept[bucket] = counts
                continue
            try:
                _upsert([_row(bucket, counts)])
                written += 1
            except IntegrityError as refused:  # its key or model was deleted meanwhile
                logger.warning(
                    "usage: dropped the counts of a bucket the database refused: %s", refused
                )
            except _VALUE_ERRORS:
                failed[bucket] = counts
            except DatabaseError as error:
                down = error
                kept[bucket] = counts
    return written, failed, kept, down


def _struck(failed: dict[Bucket, Any]) -> dict[Bucket, Any]:
    """The failed buckets to try again; those that failed STRIKES times are dropped (logged)."""
    kept = {}
    for bucket, counts in failed.items():
        strikes = _strikes[bucket] = _strikes.get(bucket, 0) + 1
        if strikes < STRIKES:
            kept[bucket] = counts
            continue
        del _strikes[bucket]
        model_id, version, key_id, hour = bucket
        logger.error(
            "usage: dropped a bucket the database failed to write %s times (model id %s,"
            " version %s, key id %s, hour %s): %s requests, %s prompt and %s completion tokens"
            " not counted",
            STRIKES,
            model_id,
            version,
            key_id,
            datetime.fromtimestamp(hour * 3600, tz=timezone.utc).isoformat(),
            counts.requests,
            counts.prompt_tokens,
            counts.completion_tokens,
        )
    return kept


# Buckets that failed to be written alone, and how often (under the accumulator's write lock).
_strikes: dict[Bucket, int] = {}


def _row(bucket: Bucket, counts: Any) -> tuple:
    model_id, version, key_id, hour = bucket
    start = datetime.fromtimestamp(hour * 3600, tz=timezone.utc)
    return (
        model_id,
        version,
        key_id,
        connection.ops.adapt_datetimefield_value(start),
        *_values_of(counts),
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
    most = quote(_LARGEST)
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
