"""Admission to the models: a slot per request, per server process, and per model.

Each server process runs at most MAX_IN_FLIGHT chat requests at once, a model with
`max_concurrency` at most that many of its own, and any other model at most MAX_IN_FLIGHT less
CHATMODELS_RESERVED_SLOTS. A request past either limit waits for a slot (a suspended coroutine,
not a thread) for at most CHATMODELS_QUEUE_TIMEOUT seconds in all, then gets ServerBusy (503,
Retry-After): saturation is never a hang.

The pools are counters under a lock, not asyncio semaphores: a waiter may sit on any event loop
(the server's, or the throwaway loop of a synchronous caller such as the test client), and a
released slot is handed to the oldest waiter on its own loop.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time

from django.conf import settings

from chatmodels.exceptions import ServerBusy

_lock = threading.Lock()
_process_slots: tuple[int, _Pool] | None = None
_model_slots: dict[int, tuple[int, _Pool]] = {}


class _Waiter:
    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False  # decided under the pool's lock: the slot is this waiter's


class _Pool:
    """`size` slots; waiters are served first come, first served."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._lock = threading.Lock()
        self._waiters: collections.deque[_Waiter] = collections.deque()

    async def take(self, timeout: float) -> bool:
        """A slot within `timeout` seconds (True), or False. Cancelled: no slot is kept."""
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            waiter = _Waiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter.future, timeout)
            return True
        except BaseException as error:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted and isinstance(error, (TimeoutError, asyncio.TimeoutError)):
                return True  # handed over as the wait ran out: it is ours
            if granted:
                self.give_back()
            if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
                return False
            raise

    def give_back(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:  # its loop is closed: that waiter is gone
                    continue
                waiter.granted = True
                return
            self._free += 1

    @property
    def in_use(self) -> int:
        return self.size - self._free


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Slot:
    """A held slot; `release()` gives it back (once, however often it is called)."""

    __slots__ = ("_pools",)

    def __init__(self, pools: list[_Pool]) -> None:
        self._pools = pools

    def release(self) -> None:
        pools, self._pools = self._pools, []
        for pool in pools:
            pool.give_back()


async def acquire(*, model_id: int, model_name: str, max_concurrency: int | None) -> Slot:
    """A slot for one request to `model_id`, waiting up to the queue timeout for it.

    The model's own slot is taken first, so that requests to a model at its limit wait without
    holding a slot of the process. A model without `max_concurrency` may hold all the process's
    slots but CHATMODELS_RESERVED_SLOTS, which stay for the other models: a model that hangs
    cannot take every slot.
    """
    timeout = settings.CHATMODELS_QUEUE_TIMEOUT
    deadline = time.monotonic() + timeout
    size = settings.MAX_IN_FLIGHT
    limit = max_concurrency or max(1, size - settings.CHATMODELS_RESERVED_SLOTS)
    model = _pool_of_model(model_id, limit)
    if not await model.take(timeout):
        if max_concurrency:
            full = f"model {model_name} is at its max_concurrency of {limit}"
        else:
            full = (
                f"the server is at capacity for model {model_name} ({limit} requests in flight"
                f" per process, of {size}; the rest are kept for other models)"
            )
        raise ServerBusy(
            f"{full} and no slot freed up within {timeout:g} s; retry later",
            retry_after=_retry_after(),
        )
    process = _pool_of_process()
    try:
        taken = await process.take(max(0.0, deadline - time.monotonic()))
    except BaseException:
        model.give_back()
        raise
    if not taken:
        model.give_back()
        raise ServerBusy(
            f"the server is at capacity ({size} requests in flight per process)"
            f" and no slot freed up within {timeout:g} s; retry later",
            retry_after=_retry_after(),
        )
    return Slot([process, model])


def in_flight() -> int:
    """Chat requests holding a slot of this process now."""
    current = _process_slots
    return 0 if current is None else current[1].in_use


def _retry_after() -> int:
    return max(1, math.ceil(settings.CHATMODELS_QUEUE_TIMEOUT / 2))


def _pool_of_process() -> _Pool:
    global _process_slots
    size = settings.MAX_IN_FLIGHT
    current = _process_slots
    if current is None or current[0] != size:
        with _lock:
            if _process_slots is None or _process_slots[0] != size:
                _process_slots = (size, _Pool(size))
            current = _process_slots
    return current[1]


def _pool_of_model(model_id: int, size: int) -> _Pool:
    # A changed max_concurrency (admin) takes a new pool; requests holding the old one release
    # into it, so the change is exact once they finish.
    current = _model_slots.get(model_id)
    if current is None or current[0] != size:
        with _lock:
            current = _model_slots.get(model_id)
            if current is None or current[0] != size:
                current = (size, _Pool(size))
                _model_slots[model_id] = current
    return current[1]
