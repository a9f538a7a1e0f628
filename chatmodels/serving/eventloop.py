"""The per-process event loop, where the model workers' client runs (`serving/workers/client.py`).

Under the ASGI server it is the server's own loop (`adopt`, at the first request): chat requests
await their model workers directly. Elsewhere (a management command, a test, a synchronous view)
a loop thread is started on first use, and other threads hand coroutines to it (`run`) or other
loops await them there (`call`). Django-free: in a model worker, the worker's own loop stands in
for it, and a model's async `load_context` runs there.
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


def adopt(loop: asyncio.AbstractEventLoop) -> None:
    """Make `loop` (the server's, running) this process's loop, unless it already has one."""
    global _loop, _loop_pid
    if _loop is not None and _loop_pid == os.getpid():
        return
    with _lock:
        if _loop is None or _loop_pid != os.getpid():
            _loop, _loop_pid = loop, os.getpid()


async def call(coroutine: Coroutine[Any, Any, T]) -> T:
    """Await `coroutine` on this process's loop: here if it is the running one, else over there
    (cancelling the caller cancels it too)."""
    if _loop is asyncio.get_running_loop() and _loop_pid == os.getpid():
        return await coroutine
    return await asyncio.wrap_future(submit(coroutine))


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
