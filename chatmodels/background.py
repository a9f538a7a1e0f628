"""Work a process does beside its requests, and what it keeps for that work.

Usage counts, metric tallies and limit leases are kept in each worker's memory and handed on in
the background; what is left is handed on when the process stops. `atexit` covers ordinary
processes; the server's worker processes (granian forks them and they end in `os._exit`, which
skips `atexit`) run multiprocessing's exit finalizers instead, so both are registered.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

S = TypeVar("S")


def run_in_background(
    name: str,
    task: Callable[[], object],
    *,
    every: float,
    at_exit: Callable[[], object],
    stop: threading.Event | None = None,
) -> None:
    """Call `task` every `every` seconds on a daemon thread (none when `every` is 0) until `stop`
    is set, and `at_exit` when the process stops. Call it once per process: the caller keeps
    track. A failing `task` is logged and tried again next time."""
    atexit.register(at_exit)
    multiprocessing.util.Finalize(None, at_exit, exitpriority=100)
    if every > 0:
        threading.Thread(
            target=_repeat,
            args=(name, task, every, stop or threading.Event()),
            name=f"chatmodels-{name}",
            daemon=True,
        ).start()


def _repeat(name: str, task: Callable[[], object], every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        try:
            task()
        except Exception:
            logger.exception("%s: the background task failed; it runs again in %s s", name, every)


class PerProcess(Generic[S]):
    """This process's `state` (made by `new`) and its background work, `task` every `every()`
    seconds and `at_exit`, which `start()` sets up once per process.

    A forked child (each of the server's workers) starts with a new state, new locks and nothing
    started: what the parent kept stays the parent's to hand on, and the parent's locks may be
    held by threads the child does not have.
    """

    def __init__(
        self,
        name: str,
        new: Callable[[], S],
        *,
        task: Callable[[], object],
        every: Callable[[], float],
        at_exit: Callable[[], object],
    ) -> None:
        self.name = name
        self._new, self._task, self._every, self._at_exit = new, task, every, at_exit
        self._begin()
        os.register_at_fork(after_in_child=self._begin)

    def _begin(self) -> None:
        self.lock = threading.Lock()  # `state`
        self.write_lock = threading.Lock()  # one write at a time, and the start
        self.state: S = self._new()
        self.started = False
        self.stop = threading.Event()  # no more `task` (its thread ends)
        self.interval = 0.0  # `every()` as it was at the start

    def start(self) -> None:
        """Once per process: the exit hooks and, unless `every()` is 0, the thread of `task`.
        The interval is read now, so that a setting changed by then is used."""
        with self.write_lock:
            if self.started:
                return
            self.started = True
            self.interval = self._every()
        run_in_background(
            self.name, self._task, every=self.interval, at_exit=self._at_exit, stop=self.stop
        )


ADD_UP_AT = 4096  # entries: a queue this long is added up by the request that fills it


class Accumulator(PerProcess[S]):
    """A `PerProcess` whose requests queue entries, added up into `state` by `add_up(queue,
    state)` (`lock` held) off the request path: by the writer (`task`) and before a read.

    A request only appends to `queue` (a deque: atomic, no lock) and starts the writer the first
    time; a queue `add_up_at` entries long is added up by the request that fills it, so that a
    writer that falls behind does not let it grow. Adding up many entries in one tight loop costs
    a few microseconds less per request than adding each up, under the lock, as it comes.
    """

    def __init__(
        self,
        name: str,
        new: Callable[[], S],
        *,
        add_up: Callable[[deque, S], None],
        task: Callable[[], object],
        every: Callable[[], float],
        at_exit: Callable[[], object],
        add_up_at: int = ADD_UP_AT,
    ) -> None:
        self._add_up = add_up
        self.add_up_at = add_up_at
        super().__init__(name, new, task=task, every=every, at_exit=at_exit)

    def _begin(self) -> None:
        super()._begin()
        self.queue: deque = deque()  # entries not added up yet

    def add(self, entry: object) -> None:
        """Queue one request's `entry` (the request path)."""
        queue = self.queue
        queue.append(entry)
        if len(queue) >= self.add_up_at:
            with self.lock:
                self._add_up(queue, self.state)
        if not self.started:
            self.start()

    def add_up(self) -> None:
        """Move the queued entries into `state` (`lock` held)."""
        self._add_up(self.queue, self.state)
