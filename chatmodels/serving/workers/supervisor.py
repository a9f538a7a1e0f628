"""The gateway's side of model workers: start, pick, watch, restart and stop them.

One Supervisor per gateway process (made anew in a forked child), bound to the event loop it
is first used on; all its state changes on that loop. A version's worker set (keyed by version
id and digest) starts on first use with `replicas` processes; a request goes to the ready
replica with the fewest requests in flight. A worker that dies fails only its own in-flight
requests (ModelCrashed) and is started again at the next request, after a backoff that doubles
with each crash; CHATMODELS_WORKER_CRASH_LIMIT crashes within CHATMODELS_WORKER_CRASH_WINDOW
seconds make the version ModelUnavailable, with no new process, until `restart`. A load failure
is remembered for CHATMODELS_WORKER_LOAD_RETRY_SECONDS. Once a second a ticker reads each
worker's memory (and kills one over its limit), stops workers idle for
CHATMODELS_WORKER_IDLE_SECONDS, writes this process's workers to the host's board and follows
its restart requests (`board.py`). A version's replicas and memory limit follow its latest
spec: more replicas start at the next request, fewer retire once idle. Processes are reaped
through a pidfd: no thread per worker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import itertools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chatmodels
from chatmodels import metrics
from chatmodels.exceptions import ModelCrashed, ModelLoadError, ModelTimeout, ModelUnavailable
from chatmodels.serving.workers import board, protocol
from chatmodels.serving.workers.board import WorkerInfo
from chatmodels.serving.workers.worker import rss_bytes

logger = logging.getLogger(__name__)

STARTING, READY, STOPPING, DEAD = "starting", "ready", "stopping", "dead"
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0  # seconds before a crashed worker is started again

# Passed to a worker as they are; names matching NEVER_PASSED are not, even when listed in
# CHATMODELS_WORKER_ENV.
PASSED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "PYTHONHOME",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONWARNINGS",
        "PYTHONHASHSEED",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
PASSED_PREFIXES = ("LC_",)
NEVER_PASSED = frozenset({"SECRET_KEY", "DATABASE_URL", "CACHE_URL", "REDIS_URL"})
NEVER_PASSED_PREFIXES = ("AWS_", "DJANGO_")


@dataclass(frozen=True)
class WorkerSpec:
    """What the gateway knows of a version it wants served by workers."""

    version_id: int
    digest: str
    model_name: str
    version: int  # the version's number, for people
    served_name: str  # the name errors give (what the client asked for)
    # The package's bytes, or a function reading them (called off the event loop, once).
    package: bytes | Callable[[], bytes] = field(repr=False, compare=False)
    replicas: int = 1
    concurrency: int = 0  # threads for sync predict in each worker (0: Config.threads)
    memory_limit_mb: int | None = None  # a worker over it is killed

    @property
    def key(self) -> tuple[int, str]:
        return (self.version_id, self.digest)


@dataclass(frozen=True)
class Config:
    """The settings workers run with (read from Django's settings at each use)."""

    directory: Path
    env_names: tuple[str, ...] = ()
    idle_seconds: float = 900.0
    grace_seconds: float = 5.0
    crash_limit: int = 5
    crash_window: float = 60.0
    load_retry_seconds: float = 10.0
    start_seconds: float = 300.0
    max_frame: int = protocol.DEFAULT_MAX_FRAME
    landlock: bool = True
    paths: tuple[str, ...] = ()  # folders a model may read and write besides its own
    # A worker's threads for a sync model that sets no max_concurrency: as many requests as a
    # gateway process admits (started as they are needed).
    threads: int = 512

    @classmethod
    def current(cls) -> Config:
        from django.conf import settings

        if not settings.configured:
            return cls(directory=Path(tempfile.gettempdir()) / f"chatmodels-workers-{os.getuid()}")
        directory = getattr(settings, "CHATMODELS_WORKER_DIR", None) or (
            Path(settings.CHATMODELS_CACHE_DIR) / "workers"
        )
        defaults = cls(directory=Path(directory))
        return cls(
            directory=Path(directory),
            env_names=tuple(getattr(settings, "CHATMODELS_WORKER_ENV", ())),
            idle_seconds=getattr(settings, "CHATMODELS_WORKER_IDLE_SECONDS", defaults.idle_seconds),
            grace_seconds=getattr(
                settings, "CHATMODELS_WORKER_GRACE_SECONDS", defaults.grace_seconds
            ),
            crash_limit=getattr(settings, "CHATMODELS_WORKER_CRASH_LIMIT", defaults.crash_limit),
            crash_window=getattr(settings, "CHATMODELS_WORKER_CRASH_WINDOW", defaults.crash_window),
            load_retry_seconds=getattr(
                settings, "CHATMODELS_WORKER_LOAD_RETRY_SECONDS", defaults.load_retry_seconds
            ),
            start_seconds=getattr(
                settings, "CHATMODELS_WORKER_START_SECONDS", defaults.start_seconds
            ),
            max_frame=getattr(settings, "CHATMODELS_WORKER_MAX_FRAME_BYTES", defaults.max_frame),
            landlock=getattr(settings, "CHATMODELS_WORKER_LANDLOCK", defaults.landlock),
            paths=tuple(str(path) for path in getattr(settings, "CHATMODELS_WORKER_PATHS", ())),
            threads=getattr(settings, "MAX_IN_FLIGHT", defaults.threads),
        )


class LoadFailed(Exception):
    """A worker could not load its package: `error` is the exception's class name there."""

    def __init__(self, error: str, message: str, traceback: str) -> None:
        super().__init__(message)
        self.error, self.message, self.traceback = error, message, traceback


def worker_env(config: Config, tmp_dir: Path, lib_dir: Path) -> dict[str, str]:
    """The environment of a worker: the allowed names only, never the gateway's secrets."""
    env = {}
    for name, value in os.environ.items():
        allowed = (
            name in PASSED_NAMES or name.startswith(PASSED_PREFIXES) or name in config.env_names
        )
        if allowed and name not in NEVER_PASSED and not name.startswith(NEVER_PASSED_PREFIXES):
            env[name] = value
    env["TMPDIR"] = str(tmp_dir)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(lib_dir), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    return env


def private_dir(path: Path) -> Path:
    """`path` made (with its parents) and kept 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_package(folder: Path, data: bytes) -> Path:
    """The package as `folder/package.zip`, written once (0444; atomically)."""
    target = folder / "package.zip"
    if target.exists() and target.stat().st_size == len(data):
        return target  # its digest is checked again by every worker that opens it
    fd, staging = tempfile.mkstemp(prefix=".package-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(staging, 0o444)
        os.replace(staging, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
    return target


class Call:
    """One request to a worker: what the worker sends for it arrives in `queue`."""

    def __init__(self, worker: WorkerProcess, call_id: int, served_name: str) -> None:
        self.worker = worker
        self.id = call_id
        self.served_name = served_name
        self.queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self.ended = False

    def deliver(self, message: dict[str, Any] | BaseException) -> None:
        if isinstance(message, BaseException) or message["kind"] in protocol.FINAL:
            self.ended = True
            self.worker.calls.pop(self.id, None)
            self.worker.last_active = time.monotonic()
        self.queue.put_nowait(message)

    def ready(self) -> bool:
        """Whether a message has arrived and waits to be taken."""
        return not self.queue.empty()

    async def next(self, deadline: float | None, *, timeout: float | None) -> dict[str, Any] | None:
        """The next message; None when `deadline` (loop time) passes first."""
        if not self.queue.empty():
            item = self.queue.get_nowait()
        elif deadline is None:
            item = await self.queue.get()
        else:
            try:
                if _timeout_at is None:  # Python 3.10
                    item = await asyncio.wait_for(self.queue.get(), max(0.0, deadline - _now()))
                else:  # a timer, not a task per message
                    async with _timeout_at(deadline):
                        item = await self.queue.get()
            except asyncio.TimeoutError:
                return None
        if isinstance(item, BaseException):
            raise item
        return item

    def send(self, kind: str, **fields: Any) -> None:
        if not self.ended:
            self.worker.send(protocol.message(kind, id=self.id, **fields))

    def abandon(self) -> None:
        """Stop the request in the worker; a worker that does not end it within the grace
        period is killed (and replaced at the next request). A worker that sent anything during
        that period gets another, up to MAX_GRACE_PERIODS in all."""
        if self.ended:
            return
        self.send("cancel")
        worker = self.worker
        grace = worker.config.grace_seconds
        loop = asyncio.get_running_loop()

        def check(periods: int, heard_before: int) -> None:
            if self.ended or worker.state == DEAD:
                return
            if worker.heard != heard_before and periods < MAX_GRACE_PERIODS:
                # The worker is answering, only slowly (a loaded machine, a thousand requests
                # cancelled at once): killing it would fail the requests it is answering.
                loop.call_later(grace, check, periods + 1, worker.heard)
                return
            logger.error(
                "model %s: a cancelled request did not end within %g s; worker %s killed",
                self.served_name,
                grace * periods,
                worker.pid,
            )
            worker.kill("hung")

        loop.call_later(grace, check, 1, worker.heard)


class WorkerProcess:
    """One worker process and its connection."""

    def __init__(self, owner: WorkerSet | None, spec: WorkerSpec, config: Config) -> None:
        self.owner = owner
        self.spec = spec
        self.config = config
        self.state = STARTING
        self.calls: dict[int, Call] = {}
        self.pid = 0
        self.rss: int | None = None
        self.started_at = datetime.datetime.now(datetime.timezone.utc)
        self.last_active = time.monotonic()
        self.streams = False
        self.kill_reason: str | None = None
        self.heard = 0  # messages read from the worker: a sign it is alive, for `Call.abandon`
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._popen: subprocess.Popen | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tmp_dir: Path | None = None

    async def start(self, package: Path, work_dir: Path) -> None:
        """Spawn the process and wait for `ready`; LoadFailed, or OSError, if it is not."""
        config = self.config
        tmp_dir = Path(tempfile.mkdtemp(prefix="tmp-", dir=private_dir(config.directory)))
        self._tmp_dir = tmp_dir
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lib_dir = _lib_dir(config.directory)
            command = [
                sys.executable,
                "-m",
                "chatmodels.serving.workers.worker",
                f"--fd={child.fileno()}",
                f"--parent={os.getpid()}",
                f"--package={package}",
                f"--digest={self.spec.digest}",
                f"--work-dir={work_dir}",
                f"--threads={self.spec.concurrency or config.threads}",
                f"--max-frame={config.max_frame}",
                f"--lib-dir={lib_dir}",
                *(["--landlock"] if config.landlock else []),
                *(f"--path={path}" for path in config.paths),
            ]
            # Fork and exec take a few ms (vfork): short enough to do on the loop.
            self._popen = subprocess.Popen(
                command,
                pass_fds=(child.fileno(),),
                env=worker_env(config, tmp_dir, lib_dir),
                cwd=tmp_dir,
                stdin=subprocess.DEVNULL,
                stdout=2,  # what a model prints goes to the gateway's log
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            self._cleanup()
            raise
        finally:
            child.close()
        self.pid = self._popen.pid
        self._watch_exit()
        reader, self._writer = await asyncio.open_connection(sock=parent)
        try:
            first = await asyncio.wait_for(
                protocol.read(reader, config.max_frame, protocol.TO_GATEWAY), config.start_seconds
            )
        except (asyncio.TimeoutError, protocol.ProtocolError, OSError) as error:
            self.kill("start")
            raise LoadFailed("StartFailed", f"the worker did not start: {error!r}", "") from None
        if first is None or first["kind"] == "load_failed":
            self.kill("start")
            if first is None:
                raise LoadFailed("StartFailed", "the worker exited while loading", "")
            raise LoadFailed(first["error"], first["message"], first["traceback"])
        if first["kind"] != "ready":
            self.kill("start")
            raise LoadFailed("StartFailed", f"the worker sent {first['kind']} first", "")
        self.streams = bool(first["streams"])
        self.state = READY
        self.last_active = time.monotonic()
        asyncio.get_running_loop().create_task(self._read(reader))

    def _watch_exit(self) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(self.pid)

        def readable() -> None:
            assert self._popen is not None
            code = self._popen.poll()
            if code is None:
                return  # another thread holds Popen's wait lock: called again
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._exited(code)

        loop.add_reader(pidfd, readable)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                message = await protocol.read(reader, self.config.max_frame, protocol.TO_GATEWAY)
            except (protocol.ProtocolError, OSError) as error:
                logger.error(
                    "model %s: worker %s broke the protocol: %s", self.name, self.pid, error
                )
                message = None
            if message is None:
                break
            self.heard += 1
            call = self.calls.get(message.get("id"))  # type: ignore[arg-type]
            if call is not None:
                call.deliver(message)
        # The connection ended: the process is gone, or going (a worker only ever ends it by
        # exiting).
        self.kill(self.kill_reason)

    @property
    def name(self) -> str:
        return f"{self.spec.model_name}/{self.spec.version}"

    def open_call(self, call_id: int, served_name: str) -> Call:
        call = Call(self, call_id, served_name)
        self.calls[call_id] = call
        self.last_active = time.monotonic()
        return call

    def send(self, message: dict[str, Any]) -> None:
        """Queue a frame to the worker (a request is small; its answers are what is bounded)."""
        if self._writer is not None and self.state == READY:
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.write(protocol.encode(message, self.config.max_frame))

    def stop(self, reason: str) -> None:
        """End the worker: its socket closes and it exits; killed if it has not after the grace
        period."""
        if self.state in (DEAD, STOPPING):
            return
        self.state = STOPPING
        self.kill_reason = self.kill_reason or reason
        if self._writer is not None:
            self._writer.close()
        asyncio.get_running_loop().call_later(
            self.config.grace_seconds, self.kill, self.kill_reason
        )

    def kill(self, reason: str | None) -> None:
        if self.state == DEAD or self.exited.done():
            return
        if self.state != STOPPING:
            self.state = STOPPING
        self.kill_reason = self.kill_reason or reason
        self._sigkill()

    def _sigkill(self) -> None:
        if self._popen is not None and self._popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def _exited(self, code: int) -> None:
        self.state = DEAD
        if self._writer is not None:
            self._writer.close()
        reason = self.kill_reason
        if reason is None:
            logger.error("model %s: worker %s exited (code %s)", self.name, self.pid, code)
        calls, self.calls = list(self.calls.values()), {}
        for call in calls:
            call.deliver(self._failure(call.served_name, reason))
        self._cleanup()
        self.exited.set_result(code)
        if self.owner is not None:
            self.owner.worker_exited(self, crashed=reason in (None, "memory"))

    def _failure(self, served_name: str, reason: str | None) -> ModelCrashed:
        if reason == "memory":
            limit = self.spec.memory_limit_mb
            return ModelCrashed(
                f"model {served_name} exceeded its memory limit ({limit} MB) and was stopped"
            )
        if reason == "hung":
            return ModelCrashed(
                f"model {served_name} was restarted: a request it was asked to stop did not end"
            )
        if reason in STOPPED_ON_PURPOSE:
            return ModelCrashed(f"model {served_name} was stopped while answering")
        return ModelCrashed(f"model {served_name} crashed while answering")

    def _cleanup(self) -> None:
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    def info(self, restarts: int) -> WorkerInfo:
        return WorkerInfo(
            model_name=self.spec.model_name,
            version=self.spec.version,
            version_id=self.spec.version_id,
            digest=self.spec.digest,
            pid=self.pid,
            rss_bytes=self.rss,
            in_flight=len(self.calls),
            restarts=restarts,
            state=self.state,
            started_at=self.started_at,
        )

    def poll(self, now: float) -> None:
        """Once a second: memory (killed over the limit), idleness (stopped)."""
        if self.state != READY:
            return
        self.rss = rss_bytes(self.pid)
        limit = self.spec.memory_limit_mb
        if limit and self.rss is not None and self.rss > limit * 1024 * 1024:
            logger.error(
                "model %s: worker %s uses %d MB, over its limit of %d MB: killed",
                self.name,
                self.pid,
                self.rss // (1024 * 1024),
                limit,
            )
            self.kill("memory")
        elif not self.calls and now - self.last_active > self.config.idle_seconds:
            logger.info("model %s: worker %s idle, stopped", self.name, self.pid)
            self.stop("idle")

    def kill_now(self) -> subprocess.Popen | None:
        """SIGKILL from any thread (the gateway is exiting); the Popen to wait for."""
        self.kill_reason = self.kill_reason or "shutdown"
        self._sigkill()
        return self._popen


class WorkerSet:
    """A version's workers (`replicas` of them), its crash record and its load failure."""

    def __init__(self, supervisor: Supervisor, spec: WorkerSpec) -> None:
        self.supervisor = supervisor
        self.spec = spec
        self.slots: list[WorkerProcess | None] = [None] * max(1, spec.replicas)
        self.retiring: list[WorkerProcess] = []  # replicas past a lowered count, until idle
        self.crashes: collections.deque[float] = collections.deque()
        self.restarts = 0
        self.unavailable = False
        self.load_failure: tuple[float, LoadFailed] | None = None
        self.backoff_until = 0.0
        self._package: Path | None = None
        self._changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _notify(self) -> None:
        if not self._changed.done():
            self._changed.set_result(None)
        self._changed = asyncio.get_running_loop().create_future()

    async def acquire(self, spec: WorkerSpec, deadline: float | None, timeout: float | None):
        """The least-loaded ready worker, starting the missing ones."""
        while True:
            if self.unavailable:
                raise ModelUnavailable(
                    f"model {spec.served_name} keeps crashing and is unavailable until it is"
                    " fixed or restarted"
                )
            if self.load_failure is not None:
                if time.monotonic() < self.load_failure[0]:
                    raise ModelLoadError(f"model version {self.label} could not be loaded")
                self.load_failure = None
            ready = [w for w in self.slots if w is not None and w.state == READY]
            best = min(ready, key=lambda w: len(w.calls), default=None)
            if best is not None and (not best.calls or None not in self.slots):
                return best
            for index, worker in enumerate(self.slots):
                if worker is None:
                    self._start(index)
            if best is not None:
                return best
            changed = self._changed
            if deadline is None:
                await changed
                continue
            try:
                await asyncio.wait_for(asyncio.shield(changed), max(0.0, deadline - _now()))
            except asyncio.TimeoutError:
                raise timed_out(spec.served_name, timeout) from None

    @property
    def label(self) -> str:
        return f"{self.spec.model_name}/{self.spec.version}"

    def update(self, spec: WorkerSpec) -> None:
        """Follow a version's changed settings: its memory limit at once, its replicas (more
        start at the next request, the ones past a lower count retire once idle) and threads
        (in workers started from now on)."""
        if (spec.replicas, spec.memory_limit_mb, spec.concurrency) == (
            self.spec.replicas,
            self.spec.memory_limit_mb,
            self.spec.concurrency,
        ):
            return
        self.spec = spec
        wanted = max(1, spec.replicas)
        self.retiring += [w for w in self.slots[wanted:] if w is not None]
        self.slots = self.slots[:wanted] + [None] * (wanted - len(self.slots))
        for worker in self.workers():
            worker.spec = dataclasses.replace(worker.spec, memory_limit_mb=spec.memory_limit_mb)
        self._notify()

    def _start(self, index: int) -> None:
        config = Config.current()
        worker = WorkerProcess(self, self.spec, config)
        self.slots[index] = worker
        asyncio.get_running_loop().create_task(self._run_start(worker, config))

    async def _run_start(self, worker: WorkerProcess, config: Config) -> None:
        try:
            wait = self.backoff_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            folder = private_dir(config.directory / "models" / self.spec.digest)
            if self._package is None:
                self._package = await self._write_package(folder)
            started = time.perf_counter()
            await worker.start(self._package, folder)
            metrics.record_model_load(
                model=self.spec.model_name,
                version=str(self.spec.version),
                seconds=time.perf_counter() - started,
            )
        except Exception as error:
            if worker.kill_reason in STOPPED_ON_PURPOSE:  # not the model's failure to load
                logger.info("model %s: worker %s stopped while loading", self.label, worker.pid)
            else:
                failure = (
                    error
                    if isinstance(error, LoadFailed)
                    else LoadFailed(type(error).__name__, str(error), "")
                )
                logger.error(
                    "cannot load %s: %s: %s\n%s",
                    self.label,
                    failure.error,
                    failure.message,
                    failure.traceback,
                )
                self.load_failure = (time.monotonic() + config.load_retry_seconds, failure)
            self._forget(worker)
        else:
            logger.info("model %s: worker %s ready", self.label, worker.pid)
        self._notify()

    async def _write_package(self, folder: Path) -> Path:
        package = self.spec.package
        loop = asyncio.get_running_loop()
        data = package if isinstance(package, bytes) else await loop.run_in_executor(None, package)
        return await loop.run_in_executor(None, write_package, folder, data)

    def _forget(self, worker: WorkerProcess) -> None:
        """Free the worker's slot (wherever it is now: the replicas may have changed)."""
        if worker in self.slots:
            self.slots[self.slots.index(worker)] = None
        if worker in self.retiring:
            self.retiring.remove(worker)

    def worker_exited(self, worker: WorkerProcess, *, crashed: bool) -> None:
        self._forget(worker)
        if crashed:
            now = time.monotonic()
            config = worker.config
            self.crashes.append(now)
            while self.crashes and self.crashes[0] < now - config.crash_window:
                self.crashes.popleft()
            self.restarts += 1
            if len(self.crashes) >= config.crash_limit:
                logger.error(
                    "model %s crashed %d times within %g s: unavailable until restarted",
                    self.label,
                    len(self.crashes),
                    config.crash_window,
                )
                self.unavailable = True
            backoff = min(BACKOFF_FIRST * 2 ** (len(self.crashes) - 1), BACKOFF_MAX)
            self.backoff_until = now + backoff
        self._notify()

    def restart(self) -> None:
        self.unavailable = False
        self.crashes.clear()
        self.load_failure = None
        self.backoff_until = 0.0
        for worker in self.workers():
            worker.stop("restart")
        self._notify()

    def workers(self) -> list[WorkerProcess]:
        return [w for w in list(self.slots) if w is not None] + list(self.retiring)


class Supervisor:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sets: dict[tuple[int, str], WorkerSet] = {}
        self.closed = False
        self._ids = itertools.count(1)
        self.presence = board.Presence()
        self._ticker = loop.create_task(self._tick())

    def check_loop(self) -> None:
        if asyncio.get_running_loop() is not self.loop:
            raise RuntimeError("model workers are run from one event loop per process")

    async def open_call(
        self, spec: WorkerSpec, kind: str, request: dict[str, Any], *, timeout: float | None
    ) -> tuple[Call, float | None]:
        """A request sent to a worker of `spec`'s version, and its deadline (loop time)."""
        self.check_loop()
        if self.closed:
            raise ModelUnavailable(f"model {spec.served_name} is unavailable: shutting down")
        deadline = None if timeout is None else _now() + timeout
        worker_set = self.sets.get(spec.key)
        if worker_set is None:
            worker_set = self.sets[spec.key] = WorkerSet(self, spec)
        else:
            worker_set.update(spec)
        worker = await worker_set.acquire(spec, deadline, timeout)
        call = worker.open_call(next(self._ids), spec.served_name)
        fields: dict[str, Any] = {"request": request}
        if kind == "stream":
            fields["credit"] = STREAM_CREDIT
        call.send(kind, **fields)
        return call, deadline

    async def _tick(self) -> None:
        while True:
            config = Config.current()
            await asyncio.sleep(min(1.0, max(0.05, config.idle_seconds / 2)))
            now = time.monotonic()
            for worker_set in list(self.sets.values()):
                for worker in worker_set.workers():
                    retired = worker in worker_set.retiring and worker.state == READY
                    if retired and not worker.calls:
                        worker.stop("retired")
                    worker.poll(now)
            self.share(config)

    def share(self, config: Config) -> None:
        """Follow the host's restart requests, then write this process's workers to its board."""
        try:
            for model_name in self.presence.new_restarts(config.directory):
                if self.restart(model_name):
                    logger.info("model %s: workers restarted, as asked", model_name)
            unavailable = [
                (s.spec.model_name, s.spec.version, s.spec.version_id)
                for s in list(self.sets.values())
                if s.unavailable
            ]
            self.presence.publish(config.directory, self.snapshot(), unavailable)
        except OSError as error:
            logger.warning("the model workers' board in %s: %s", config.directory, error)

    def snapshot(self) -> list[WorkerInfo]:
        return [
            worker.info(worker_set.restarts)
            for worker_set in list(self.sets.values())
            for worker in worker_set.workers()
            if worker.state != DEAD and worker.pid
        ]

    def restart(self, target: int | str) -> int:
        found = [s for s in self.sets.values() if target in (s.spec.version_id, s.spec.model_name)]
        for worker_set in found:
            worker_set.restart()
        return len(found)

    def kill_all(self, timeout: float) -> list[int]:
        """SIGKILL every worker and wait for them (any thread); their pids."""
        self.closed = True
        self._ticker.get_loop().call_soon_threadsafe(self._ticker.cancel)
        self.presence.withdraw()
        popens = [
            worker.kill_now()
            for worker_set in list(self.sets.values())
            for worker in worker_set.workers()
        ]
        pids = []
        for popen in popens:
            if popen is None:
                continue
            pids.append(popen.pid)
            with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                popen.wait(timeout)
        return pids


STREAM_CREDIT = 8  # chunks a stream may have on its way before its consumer takes them
# Why the gateway stops a worker that is not the model's fault (`WorkerProcess.kill_reason`).
STOPPED_ON_PURPOSE = frozenset({"restart", "shutdown", "idle", "retired"})
# Grace periods a worker gets to end a cancelled request while it keeps sending (see
# `Call.abandon`): a request it never ends kills it after at most this many.
MAX_GRACE_PERIODS = 6


def timed_out(served_name: str, timeout: float | None) -> ModelTimeout:
    return ModelTimeout(f"model {served_name} did not answer within {timeout:g} s", param=None)


_timeout_at = getattr(asyncio, "timeout_at", None)


def _now() -> float:
    return asyncio.get_running_loop().time()


def _lib_dir(directory: Path) -> Path:
    """A folder holding only a link to the chatmodels package: the worker's import path,
    without the project's own folder (its settings, its .env) on it."""
    lib = private_dir(directory / "lib")
    link = lib / "chatmodels"
    target = os.path.dirname(os.path.abspath(chatmodels.__file__))
    if not (link.is_symlink() and os.readlink(link) == target):
        staging = lib / f".chatmodels-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        os.symlink(target, staging)
        os.replace(staging, link)
    return lib
