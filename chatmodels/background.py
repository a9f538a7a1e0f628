"""Work a process does beside its requests: a task every few seconds, and once more at exit.

Usage counts, metric tallies and limit leases are kept in each worker's memory and handed on in
the background; what is left is handed on when the process stops. `atexit` covers ordinary
processes; the server's worker processes (granian forks them and they end in `os._exit`, which
skips `atexit`) run multiprocessing's exit finalizers instead, so both are registered.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


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
