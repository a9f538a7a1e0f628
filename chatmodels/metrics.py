"""Prometheus metrics, correct across the server's worker processes.

`scripts/server` sets `PROMETHEUS_MULTIPROC_DIR` (emptied at each start) before any worker
starts: prometheus-client then keeps every value in a memory-mapped file per process there, and
`render()` adds them up, so a scrape of any worker sees the whole host. Without it (tests,
`runserver`) the values live in this process. A worker that died leaves its counters (they stay
counted) and its in-flight gauge, which `render()` drops (`mark_process_dead`).

A request is noted in this process's memory (`request_started`, `record_request`), added up and
written to prometheus-client's values every `WRITE_SECONDS` by a thread, before this process
renders a scrape, and at exit: other workers' requests reach a scrape within a second.

Labels stay bounded: `model` and `version` are set only once a request's version is resolved
(an unknown model is `model=""`), and `route` is the URL pattern's name, never the path.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_left
from collections import deque

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from chatmodels.background import Accumulator

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Chat models answer in milliseconds (an echo) to minutes (a long generation).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter(
    "chatmodels_requests",
    "Chat requests answered, by model, version, route and HTTP status.",
    ["model", "version", "route", "status"],
)
REQUEST_DURATION = Histogram(
    "chatmodels_request_duration_seconds",
    "Seconds from the start of a chat request to the end of its answer (a stream's last event).",
    ["model", "version", "route"],
    buckets=_LATENCY_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "chatmodels_time_to_first_token_seconds",
    "Seconds from the start of a streamed chat request to its first chunk.",
    ["model", "version", "route"],
    buckets=_LATENCY_BUCKETS,
)
TOKENS = Counter(
    "chatmodels_tokens",
    "Tokens the models reported in their usage, by kind (prompt or completion).",
    ["model", "version", "kind"],
)
IN_FLIGHT = Gauge(
    "chatmodels_in_flight_requests",
    "Chat requests being answered now.",
    ["model"],
    multiprocess_mode="livesum",
)
MODEL_ERRORS = Counter(
    "chatmodels_model_errors",
    "Failures of the models themselves, by type (raised, timeout, invalid_output, load).",
    ["model", "version", "type"],
)
MODEL_LOAD = Histogram(
    "chatmodels_model_load_seconds",
    "Seconds to load a version into a worker process (read, check the digest, load_context).",
    ["model", "version"],
    buckets=_LOAD_BUCKETS,
)


def enabled() -> bool:
    return settings.CHATMODELS_METRICS


def record_request(
    *,
    model: str,
    version: str,
    route: str,
    status: int,
    seconds: float,
    first_chunk_seconds: float | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    model_error: str | None = None,
    was_in_flight: bool = False,
) -> None:
    """One finished chat request: its count, duration, time to first chunk, tokens, error;
    `was_in_flight`: `request_started(model)` counted it, and it is in flight no more."""
    _tallies.add(
        (
            (model, version, route, status),
            seconds,
            first_chunk_seconds,
            prompt_tokens,
            completion_tokens,
            model if was_in_flight else None,
        )
    )
    if model_error is not None:  # rare: written at once
        MODEL_ERRORS.labels(model, version, model_error).inc()


def request_started(model: str) -> None:
    """One more request of `model` in flight in this process (written with the tallies); it
    ends with its `record_request(..., was_in_flight=True)`."""
    tallies = _tallies
    tallies.state.starts.append(model)
    if not tallies.started:
        tallies.start()


# ---------------------------------------------------------------------------------------------
# Tallies. A request queues one entry (`background.Accumulator`); `write()` adds the entries up
# per label set and hands the sums to prometheus-client every WRITE_SECONDS (a thread), before
# this process renders a scrape, and at exit. Written value by value, a request cost seven
# updates of the memory-mapped files, each under prometheus-client's lock: a tenth of an echo
# model's answer.

WRITE_SECONDS = 1.0
_LATENCY_BOUNDS = (*_LATENCY_BUCKETS, float("inf"))


class _Tally:
    __slots__ = (
        "completion_tokens",
        "duration_buckets",
        "duration_sum",
        "first_chunk_buckets",
        "first_chunk_sum",
        "prompt_tokens",
        "requests",
    )

    def __init__(self) -> None:
        self.requests = self.prompt_tokens = self.completion_tokens = 0
        self.duration_sum = self.first_chunk_sum = 0.0
        self.duration_buckets = [0] * len(_LATENCY_BOUNDS)
        self.first_chunk_buckets = [0] * len(_LATENCY_BOUNDS)


class _State:
    """This process's tallies and in-flight counts (the accumulator's queue holds the requests
    finished, `record_request`)."""

    def __init__(self) -> None:
        self.starts: deque[str] = deque()  # the models of requests started (`request_started`)
        self.tallies: dict[tuple[str, str, str, int], _Tally] = {}
        self.in_flight: dict[str, int] = {}
        self.in_flight_written: dict[str, int] = {}


def _add_up(ends: deque, state: _State) -> None:
    """Move the queued requests into the tallies (the accumulator's lock held)."""
    # A request's end is queued after its start: counting the ends first, and taking the
    # starts queued until after that, no end is added up before its start.
    starts, tallies, in_flight = state.starts, state.tallies, state.in_flight
    ended = len(ends)
    for _ in range(len(starts)):
        model = starts.popleft()
        in_flight[model] = in_flight.get(model, 0) + 1
    for _ in range(ended):
        label_set, seconds, first_chunk, prompt, completion, was_in_flight = ends.popleft()
        if was_in_flight is not None:
            in_flight[was_in_flight] = in_flight.get(was_in_flight, 0) - 1
        tally = tallies.get(label_set)
        if tally is None:
            tally = tallies[label_set] = _Tally()
        tally.requests += 1
        tally.duration_sum += seconds
        tally.duration_buckets[bisect_left(_LATENCY_BOUNDS, seconds)] += 1
        if first_chunk is not None:
            tally.first_chunk_sum += first_chunk
            tally.first_chunk_buckets[bisect_left(_LATENCY_BOUNDS, first_chunk)] += 1
        tally.prompt_tokens += prompt
        tally.completion_tokens += completion


def write() -> None:
    """Hand this process's tallies to prometheus-client (the shared files, in a server)."""
    accumulator = _tallies
    with accumulator.write_lock:
        with accumulator.lock:
            accumulator.add_up()
            state = accumulator.state
            tallies, state.tallies = state.tallies, {}
            in_flight = dict(state.in_flight)
        for label_set, tally in tallies.items():
            _write_tally(label_set, tally)
        for model, count in in_flight.items():
            if state.in_flight_written.get(model) != count:
                IN_FLIGHT.labels(model).set(count)
                state.in_flight_written[model] = count


_tallies = Accumulator(
    "metrics", _State, add_up=_add_up, task=write, every=lambda: WRITE_SECONDS, at_exit=write
)


def _write_tally(label_set: tuple[str, str, str, int], tally: _Tally) -> None:
    model, version, route, status = label_set
    children = _children.get(label_set) or _children_of(model, version, route, status)
    requests, duration, first_chunk, prompt, completion = children
    requests.inc(tally.requests)
    # A histogram child keeps a sum and a count per bucket (not cumulative); prometheus-client
    # has no public call to add many observations at once.
    for histogram, total, buckets in (
        (duration, tally.duration_sum, tally.duration_buckets),
        (first_chunk, tally.first_chunk_sum, tally.first_chunk_buckets),
    ):
        if any(buckets):
            histogram._sum.inc(total)
            for bucket, count in zip(histogram._buckets, buckets, strict=True):
                if count:
                    bucket.inc(count)
    if tally.prompt_tokens:
        prompt.inc(tally.prompt_tokens)
    if tally.completion_tokens:
        completion.inc(tally.completion_tokens)


# The labelled children of each label set, looked up once: `labels()` costs as much as the
# update itself, and a process sees few label sets (models x versions x routes x statuses).
_children: dict[tuple[str, str, str, int], tuple] = {}


def _children_of(model: str, version: str, route: str, status: int) -> tuple:
    children = (
        REQUESTS.labels(model, version, route, str(status)),
        REQUEST_DURATION.labels(model, version, route),
        TIME_TO_FIRST_TOKEN.labels(model, version, route),
        TOKENS.labels(model, version, "prompt"),
        TOKENS.labels(model, version, "completion"),
    )
    _children[(model, version, route, status)] = children
    return children


def record_model_load(*, model: str, version: str, seconds: float) -> None:
    if enabled():
        MODEL_LOAD.labels(model, version).observe(seconds)


# ---------------------------------------------------------------------------------------------
# The scrape

_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


def render() -> bytes:
    """The Prometheus text of every worker process of this host (or of this process alone)."""
    write()  # this process's own tallies: a scrape sees its requests at once
    directory = settings.PROMETHEUS_MULTIPROC_DIR
    if not directory:
        return generate_latest(REGISTRY)
    _forget_dead_processes(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


def _forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of worker processes that are gone (crashed or replaced), so that
    their in-flight requests stop counting; their counters and histograms stay."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = _LIVE_GAUGE_FILE.match(name)
        if match and not _alive(int(match[1])):
            multiprocess.mark_process_dead(int(match[1]), path=directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process with that number: not ours to judge
    return True
