"""The per-process event loop: one loop thread per server process, where the model workers'
client runs (`serving/workers/client.py`).

Request threads hand coroutines to it and wait for their results, so a request waiting on its
model worker costs the loop nothing while it waits. Django-free: in a model worker, the worker's
own loop stands in for it, and a model's async `load_context` runs there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_lock = threading.Lock()


def get_loop() -> asyncio.AbstractEventLoop:
    """This process's loop, started on first use (and again in a forked child)."""
    global _loop, _loop_pid
    if _loop is not None and _loop_pid == os.getpid():
        return _loop
    with _lock:
        if _loop is None or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="chatmodels-loop", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
    return _loop


def submit(coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule `coroutine` on the loop; cancelling the future cancels its task."""
    return asyncio.run_coroutine_threadsafe(coroutine, get_loop())


class WaitTimedOut(Exception):
    """`run` gave up waiting (and cancelled the coroutine); not the coroutine's own TimeoutError."""


def run(coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coroutine` on the loop and wait for it (from any thread but the loop's).

    After `timeout` seconds it cancels the coroutine and raises WaitTimedOut.
    """
    future = submit(coroutine)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if future.done():
            raise  # the coroutine's own timeout
        future.cancel()
        raise WaitTimedOut(f"no result within {timeout} s") from None
    except BaseException:
        future.cancel()  # the waiting thread was interrupted: stop the work too
        raise


def resolve(value: Any) -> Any:
    """`value`, or what it evaluates to when it is a coroutine (an async hook's return value)."""
    if inspect.iscoroutine(value):
        return run(value)
    return value
