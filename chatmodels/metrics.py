"""Prometheus metrics (DESIGN §7), correct across the server's worker processes.

`scripts/server` sets `PROMETHEUS_MULTIPROC_DIR` (emptied at each start) before any worker
starts: prometheus-client then keeps every value in a memory-mapped file per process there, and
`render()` adds them up, so a scrape of any worker sees the whole host. Without it (tests,
`runserver`) the values live in this process. A worker that died leaves its counters (they stay
counted) and its in-flight gauge, which `render()` drops (`mark_process_dead`).

Labels stay bounded: `model` and `version` are set only once a request's version is resolved
(an unknown model is `model=""`), and `route` is the URL pattern's name, never the path.
"""

from __future__ import annotations

import os
import re

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
) -> None:
    """One finished chat request: its count, duration, time to first chunk, tokens, error."""
    children = _children.get((model, version, route, status))
    if children is None:
        children = _children_of(model, version, route, status)
    requests, duration, time_to_first_token, prompt, completion = children
    requests.inc()
    duration.observe(seconds)
    if first_chunk_seconds is not None:
        time_to_first_token.observe(first_chunk_seconds)
    if prompt_tokens:
        prompt.inc(prompt_tokens)
    if completion_tokens:
        completion.inc(completion_tokens)
    if model_error is not None:
        MODEL_ERRORS.labels(model, version, model_error).inc()


def in_flight(model: str) -> Gauge:
    """The in-flight gauge of `model`: `inc()` when a request starts, `dec()` when it ends."""
    gauge = _in_flight.get(model)
    if gauge is None:
        gauge = _in_flight[model] = IN_FLIGHT.labels(model)
    return gauge


# The labelled children of each label set, looked up once: `labels()` costs as much as the
# update itself, and a process sees few label sets (models x versions x routes x statuses).
_children: dict[tuple[str, str, str, int], tuple] = {}
_in_flight: dict[str, Gauge] = {}


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
