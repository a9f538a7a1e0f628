"""Graceful shutdown of a server worker: streams still running near the end of the graceful
timeout are cut cleanly, so that their clients get an error event and their usage is counted.

On SIGTERM (or SIGINT) the server stops taking connections and gives those in flight
`GRACEFUL_TIMEOUT` seconds to finish; then it kills the worker, and a stream cut that way ends
with no error event and its usage is lost. `install(loop)` (at the ASGI lifespan startup) puts a
handler in front of the server's own: a little before that deadline (`cut_after`), every stream
still running is ended here, with an error event, and counted; the worker then exits on its own,
writing what it counted.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

# The tasks sending a stream now, each with whether it is being cut.
_streams: dict[asyncio.Task, bool] = {}
_stopping = False


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Run `_stop` before the server's own SIGTERM and SIGINT handlers on `loop` (set before
    the lifespan starts); without such handlers (not under the server) there is nothing to do."""
    handlers: dict[int, Any] = getattr(loop, "_signal_handlers", None) or {}
    for number in (signal.SIGTERM, signal.SIGINT):
        previous = handlers.get(number)
        if previous is not None:
            loop.add_signal_handler(number, _stop, loop, previous)


def cut_after(timeout: float) -> float:
    """Seconds after the signal at which streams are cut: early enough that the worker can end
    them, and write their usage, before it is killed at `timeout`."""
    return max(timeout - 2.0, timeout / 2)


def _stop(loop: asyncio.AbstractEventLoop, previous: asyncio.Handle) -> None:
    global _stopping
    if not _stopping:
        _stopping = True
        timeout = settings.CHATMODELS_GRACEFUL_TIMEOUT
        logger.info(
            "shutting down: %s streams in flight; those still running in %.1f s are cut",
            len(_streams),
            cut_after(timeout),
        )
        loop.call_later(cut_after(timeout), cut_streams)
    previous._run()  # the server's own: stop taking connections, let these finish


def cut_streams() -> int:
    """End every stream in flight now (each gets an error event); returns how many."""
    tasks = list(_streams)
    for task in tasks:
        _streams[task] = True
        task.cancel()
    if tasks:
        logger.warning(
            "shutting down: cut %s streams at the end of the graceful timeout", len(tasks)
        )
    return len(tasks)


def streaming() -> asyncio.Task | None:
    """Count the current task as sending a stream (until `done`)."""
    task = asyncio.current_task()
    if task is not None:
        _streams[task] = False
    return task


def done(task: asyncio.Task | None) -> None:
    if task is not None:
        _streams.pop(task, None)


def being_cut(task: asyncio.Task | None) -> bool:
    """Whether `task` was cancelled by `cut_streams` (not by its client going away)."""
    return task is not None and _streams.get(task, False)
