"""Termination signals as a clean exit, for commands whose interruption must clean up."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def termination_as_exit() -> Iterator[None]:
    """Inside, SIGTERM and SIGHUP raise SystemExit(128 + signal) instead of ending the process
    on the spot, so `except`/`finally` blocks and transaction rollbacks run first."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; in a server, nothing to change
        return

    def exit_cleanly(signum, frame) -> None:
        raise SystemExit(128 + signum)

    previous = {number: signal.signal(number, exit_cleanly) for number in _SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
