"""The host's board of model workers: what every gateway process of this host runs, and the
restart requests they all follow.

Each gateway process's supervisor, once a second, writes its workers (and the versions its
crash-loop detection made unavailable) to `<worker dir>/board/<gateway pid>.json`, atomically
(a temporary file, then `os.replace`), and removes the file when it has none and when it stops.
`read_board` reads every file whose gateway still runs and deletes the others. A restart request
is a file `<worker dir>/board/restarts/<model name>.json` holding when it was asked; every
supervisor restarts that model's workers once for each request newer than what it has seen, so a
restart reaches every gateway process of the host within about a second (each file says when
its process last looked at the requests: `wait_until_followed`). Hosts share nothing:
the board is per host. Django-free.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOARD = "board"
RESTARTS = "restarts"
SUFFIX = ".json"
# Restart requests older than this are deleted when a new one is written: every supervisor has
# seen them (a supervisor made since ignores them anyway).
KEEP_REQUESTS_SECONDS = 3600.0


@dataclass(frozen=True)
class WorkerInfo:
    """One live worker, as a supervisor's `snapshot()` shows it."""

    model_name: str
    version: int
    version_id: int
    digest: str
    pid: int
    rss_bytes: int | None
    in_flight: int
    restarts: int
    state: str
    started_at: datetime.datetime


@dataclass(frozen=True)
class BoardWorker(WorkerInfo):
    """A live worker of one of the host's gateway processes (`gateway_pid`)."""

    gateway_pid: int = field(kw_only=True)


@dataclass(frozen=True)
class UnavailableVersion:
    """A version a gateway process answers 503 model_unavailable (it kept crashing) until it is
    restarted."""

    gateway_pid: int
    model_name: str
    version: int
    version_id: int


@dataclass(frozen=True)
class Board:
    """What the host's live gateway processes run: their pids, workers and unavailable versions."""

    gateways: tuple[int, ...] = ()
    workers: tuple[BoardWorker, ...] = ()
    unavailable: tuple[UnavailableVersion, ...] = ()


def board_dir(directory: Path) -> Path:
    """`directory/board` (the worker dir's), made and kept private (0700)."""
    path = Path(directory) / BOARD
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    fd, staging = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, separators=(",", ":"))
        os.replace(staging, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)


def _read_json(path: Path) -> Any:
    """A file's JSON, None when it is gone or half-made (never: writes are atomic)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot; tells a reused pid apart), or None
    when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


class Presence:
    """One gateway process's place on the board: its file, and the restart requests it has seen.

    Used from its supervisor's event loop (`publish`, `new_restarts`) and at exit (`withdraw`).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.started = _process_start(self.pid)
        self.path: Path | None = None
        self._seen: dict[str, float] = {}
        self._since = time.time()  # requests made before this process's workers existed
        self._checked_at = 0.0  # when it last looked at the requests

    def publish(
        self,
        directory: Path,
        workers: Iterable[WorkerInfo],
        unavailable: Iterable[tuple[str, int, int]] = (),
    ) -> None:
        """Write this process's workers and unavailable versions (model name, version number,
        version id) to the board; remove its file when it has neither."""
        workers, unavailable = list(workers), list(unavailable)
        path = board_dir(directory) / f"{self.pid}{SUFFIX}"
        if self.path is not None and self.path != path:
            self.withdraw()  # the worker dir changed (settings, tests)
        if not workers and not unavailable:
            self.withdraw()
            return
        data = {
            "pid": self.pid,
            "started": self.started,
            "written_at": time.time(),
            "checked_at": self._checked_at,
            "workers": [_worker_dict(info) for info in workers],
            "unavailable": [
                {"model_name": name, "version": number, "version_id": version_id}
                for name, number, version_id in unavailable
            ],
        }
        _write_atomically(path, data)
        self.path = path

    def withdraw(self) -> None:
        """Remove this process's file (it has no workers, or it stops). From any thread."""
        path, self.path = self.path, None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def new_restarts(self, directory: Path) -> list[str]:
        """The models asked to restart since this process last looked (or since it started)."""
        folder = Path(directory) / BOARD / RESTARTS
        self._checked_at = time.time()
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        wanted = []
        for file_name in names:
            if not file_name.endswith(SUFFIX) or file_name.startswith("."):
                continue
            request = _read_json(folder / file_name)
            if not isinstance(request, dict):
                continue
            model_name, asked_at = request.get("model_name"), request.get("requested_at")
            if not isinstance(model_name, str) or not isinstance(asked_at, int | float):
                continue
            if asked_at > self._seen.get(model_name, self._since):
                self._seen[model_name] = asked_at
                wanted.append(model_name)
        return wanted


def _worker_dict(info: WorkerInfo) -> dict[str, Any]:
    data = dataclasses.asdict(info)
    data["started_at"] = info.started_at.isoformat()
    return data


def request_restart(directory: Path, model_name: str) -> float:
    """Ask every gateway process of this host to restart `model_name`'s workers (and forget its
    crashes), at its next tick. When it was asked (`time.time()`)."""
    folder = board_dir(directory) / RESTARTS
    folder.mkdir(exist_ok=True, mode=0o700)
    asked_at = time.time()
    _write_atomically(
        folder / f"{model_name}{SUFFIX}", {"model_name": model_name, "requested_at": asked_at}
    )
    for old in folder.glob(f"*{SUFFIX}"):
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < asked_at - KEEP_REQUESTS_SECONDS:
                old.unlink()
    return asked_at


def _entries(cls: type, items: Any, gateway_pid: int) -> list[Any]:
    """`cls` made of each of a file's entries; an entry that is not one (written by another
    release of chatmodels, during a reload) is passed over."""
    made = []
    for item in items if isinstance(items, list) else ():
        try:
            if "started_at" in item:
                item = {**item, "started_at": datetime.datetime.fromisoformat(item["started_at"])}
            made.append(cls(gateway_pid=gateway_pid, **item))
        except (TypeError, ValueError):
            continue
    return made


def _live_files(directory: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each live gateway process's pid and file, by pid; the files of gateways that are gone
    are deleted."""
    folder = Path(directory) / BOARD
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return
    for file_name in names:
        stem = file_name.removesuffix(SUFFIX)
        if not (file_name.endswith(SUFFIX) and stem.isdigit()):
            continue
        path = folder / file_name
        data = _read_json(path)
        gateway_pid = int(stem)
        started = _process_start(gateway_pid)
        if started is None or not isinstance(data, dict) or data.get("started") != started:
            # The gateway is gone (or its pid belongs to another process now).
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        yield gateway_pid, data


def read_board(directory: Path) -> Board:
    """Every live gateway process's workers and unavailable versions, by gateway pid; the files
    of gateways that are gone are deleted."""
    gateways, workers, unavailable = [], [], []
    for gateway_pid, data in _live_files(directory):
        gateways.append(gateway_pid)
        workers += _entries(BoardWorker, data.get("workers"), gateway_pid)
        unavailable += _entries(UnavailableVersion, data.get("unavailable"), gateway_pid)
    workers.sort(key=lambda w: (w.model_name, -w.version, w.gateway_pid, w.pid))
    unavailable.sort(key=lambda u: (u.model_name, -u.version, u.gateway_pid))
    return Board(tuple(gateways), tuple(workers), tuple(unavailable))


def wait_until_followed(directory: Path, asked_at: float, timeout: float = 2.0) -> bool:
    """Wait until every live gateway process on the board has looked at the restart requests
    since `asked_at` (its file says when it last did, or it has none any more); False when one
    has not within `timeout` seconds (busy, or stopping)."""
    deadline = time.monotonic() + timeout
    while True:
        behind = [
            pid for pid, data in _live_files(directory) if data.get("checked_at", 0) < asked_at
        ]
        if not behind:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
