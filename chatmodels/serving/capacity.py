"""Admission to the models: a slot per request, per worker process, and per model.

Each worker process runs at most THREADS chat requests at once, a model with `max_concurrency`
at most that many of its own, and any other model at most THREADS less
CHATMODELS_RESERVED_SLOTS. A request past either limit waits for a slot
for at most CHATMODELS_QUEUE_TIMEOUT seconds in all, then gets ServerBusy (503, Retry-After):
saturation is never a hang. The server gives each worker spare threads for the waiting ones.
"""

from __future__ import annotations

import math
import threading
import time

from django.conf import settings

from chatmodels.exceptions import ServerBusy

_lock = threading.Lock()
_process_slots: tuple[int, threading.BoundedSemaphore] | None = None
_model_slots: dict[int, tuple[int, threading.BoundedSemaphore]] = {}


class Slot:
    """A held slot; `release()` gives it back (once, however often it is called)."""

    __slots__ = ("_semaphores",)

    def __init__(self, semaphores: list[threading.BoundedSemaphore]) -> None:
        self._semaphores = semaphores

    def release(self) -> None:
        semaphores, self._semaphores = self._semaphores, []
        for semaphore in semaphores:
            semaphore.release()


def acquire(*, model_id: int, model_name: str, max_concurrency: int | None) -> Slot:
    """A slot for one request to `model_id`, waiting up to the queue timeout for it.

    The model's own slot is taken first, so that requests to a model at its limit wait without
    holding a slot of the process. A model without `max_concurrency` may hold all the process's
    slots but CHATMODELS_RESERVED_SLOTS, which stay for the other models: a model that hangs
    cannot take every slot.
    """
    timeout = settings.CHATMODELS_QUEUE_TIMEOUT
    deadline = time.monotonic() + timeout
    limit = max_concurrency or max(1, settings.THREADS - settings.CHATMODELS_RESERVED_SLOTS)
    model = _semaphore_of_model(model_id, limit)
    if not model.acquire(timeout=timeout):
        if max_concurrency:
            full = f"model {model_name} is at its max_concurrency of {limit}"
        else:
            full = (
                f"the server is at capacity for model {model_name} ({limit} requests in flight"
                f" per process, of {settings.THREADS}; the rest are kept for other models)"
            )
        raise ServerBusy(
            f"{full} and no slot freed up within {timeout:g} s; retry later",
            retry_after=_retry_after(),
        )
    process = _semaphore_of_process()
    if not process.acquire(timeout=max(0.0, deadline - time.monotonic())):
        model.release()
        raise ServerBusy(
            f"the server is at capacity ({settings.THREADS} requests in flight per process)"
            f" and no slot freed up within {timeout:g} s; retry later",
            retry_after=_retry_after(),
        )
    return Slot([process, model])


def _retry_after() -> int:
    return max(1, math.ceil(settings.CHATMODELS_QUEUE_TIMEOUT / 2))


def _semaphore_of_process() -> threading.BoundedSemaphore:
    global _process_slots
    size = settings.THREADS
    current = _process_slots
    if current is None or current[0] != size:
        with _lock:
            if _process_slots is None or _process_slots[0] != size:
                _process_slots = (size, threading.BoundedSemaphore(size))
            current = _process_slots
    return current[1]


def _semaphore_of_model(model_id: int, size: int) -> threading.BoundedSemaphore:
    # A changed max_concurrency (admin) takes a new semaphore; requests holding the old one
    # release into it, so the change is exact once they finish.
    current = _model_slots.get(model_id)
    if current is None or current[0] != size:
        with _lock:
            current = _model_slots.get(model_id)
            if current is None or current[0] != size:
                current = (size, threading.BoundedSemaphore(size))
                _model_slots[model_id] = current
    return current[1]
