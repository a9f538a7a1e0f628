"""A model worker: one process serving one version's package, on one socket to its gateway.

    python -m chatmodels.serving.workers.worker --fd N --package FILE --digest SHA256 ...

Django-free: it imports chatmodels' packaging and types only, never Django or the settings. It
dies with its gateway (the parent-death signal, and an end of its socket). It opens the package
(digest checked), says `ready` (or `load_failed`), then serves requests multiplexed by id
(protocol.py): a sync `predict` on a thread of its pool, an async one on its own event loop,
which is its main thread (async hooks a sync method hands to chatmodels.serving.eventloop run there
too). A stream sends a chunk only while it has credit: without credit the model is not asked
for its next chunk, so a model faster than its client waits, and nothing piles up.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import logging
import os
import signal
import site
import socket
import sys
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatmodels import interfaces, packaging
from chatmodels.exceptions import ChatDataError, InvalidModelOutput
from chatmodels.logging import JsonFormatter
from chatmodels.serving import eventloop, strict_json
from chatmodels.serving.workers import landlock, protocol
from chatmodels.upstream import UpstreamError

PR_SET_PDEATHSIG = 1
_END = object()
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int | str = "self") -> int | None:
    """A process's resident memory, from /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


class _Credit:
    """How many more chunks a stream may send."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._granted = asyncio.Event()

    def grant(self, n: int) -> None:
        self.n += n
        self._granted.set()

    async def take(self) -> None:
        while self.n <= 0:
            self._granted.clear()
            await self._granted.wait()
        self.n -= 1


class Worker:
    def __init__(self, args: argparse.Namespace, sock: socket.socket) -> None:
        self.args = args
        self.sock = sock
        self.max_frame = args.max_frame
        self.pool = concurrent.futures.ThreadPoolExecutor(args.threads, thread_name_prefix="model")
        self.tasks: dict[int, asyncio.Task] = {}
        self.credits: dict[int, _Credit] = {}
        self.loaded: packaging.LoadedModel | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._outbox: list[bytes] = []  # frames to write at the end of this turn of the loop

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # The eventloop module's loop, in this process, is this one: an async `load_context`,
        # or a coroutine a sync method resolves, runs where the async methods run.
        eventloop._loop, eventloop._loop_pid = loop, os.getpid()
        reader, self.writer = await asyncio.open_connection(sock=self.sock)
        try:
            self.loaded = await loop.run_in_executor(self.pool, self._load)
        except BaseException as error:
            await self._send(
                protocol.message(
                    "load_failed",
                    error=type(error).__name__,
                    message=str(error),
                    traceback=_traceback_text(error),
                )
            )
            self._flush()  # out before the process ends
            return
        await self._send(
            protocol.message(
                "ready",
                pid=os.getpid(),
                streams=self.loaded.streams,
                predict_async=self.loaded.predict_is_async,
                stream_async=self.loaded.stream_is_async,
            )
        )
        while True:
            try:
                request = await protocol.read(reader, self.max_frame, protocol.TO_WORKER)
            except (protocol.ProtocolError, OSError):
                return
            if request is None:
                return  # the gateway is gone, or stopped this worker: main() exits at once
            self._dispatch(request)

    def _load(self) -> packaging.LoadedModel:
        data = Path(self.args.package).read_bytes()
        loaded = packaging.open_package(
            data, expected_digest=self.args.digest, work_dir=self.args.work_dir
        )
        _read_only(Path(self.args.work_dir) / self.args.digest)
        return loaded

    def _dispatch(self, request: dict[str, Any]) -> None:
        kind, call_id = request["kind"], request["id"]
        if kind == "predict":
            self._start(call_id, self._predict(call_id, request["request"]))
        elif kind == "stream":
            self.credits[call_id] = _Credit(request["credit"])
            self._start(call_id, self._stream(call_id, request["request"]))
        elif kind == "credit":
            credit = self.credits.get(call_id)
            if credit is not None:
                credit.grant(request["n"])
        elif kind == "cancel":
            task = self.tasks.get(call_id)
            if task is not None:
                task.cancel()
        elif kind == "stats":
            self._send_soon(
                protocol.message(
                    "stats", id=call_id, pid=os.getpid(), rss=rss_bytes(), in_flight=len(self.tasks)
                )
            )

    def _start(self, call_id: int, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks[call_id] = task
        task.add_done_callback(lambda _task: self._forget(call_id))

    def _forget(self, call_id: int) -> None:
        self.tasks.pop(call_id, None)
        self.credits.pop(call_id, None)

    # -- requests

    async def _predict(self, call_id: int, request: dict[str, Any]) -> None:
        await self._answer(call_id, request, self._predict_body)

    async def _stream(self, call_id: int, request: dict[str, Any]) -> None:
        await self._answer(call_id, request, self._stream_body)

    async def _answer(self, call_id: int, request: dict[str, Any], body: Callable) -> None:
        """Run `body`, and end the request with one final message whatever happens."""
        assert self.loaded is not None
        try:
            arguments = self.loaded.call_arguments(request)
        except ChatDataError as error:
            await self._fail(call_id, protocol.BAD_REQUEST, str(error))
            return
        try:
            await body(call_id, arguments)
        except asyncio.CancelledError:
            await self._fail(call_id, protocol.CANCELLED, "cancelled")
        except _Refused as refused:
            await self._fail(call_id, refused.error, refused.message)
        except UpstreamError as error:
            await self._fail(
                call_id, protocol.UPSTREAM, str(error.message)[:2000], upstream=error.to_dict()
            )
        except BaseException as error:  # SystemExit from a model too: its request fails
            await self._fail(
                call_id,
                protocol.RAISED,
                packaging.describe_error(error),
                traceback=_traceback_text(error),
            )

    async def _predict_body(self, call_id: int, arguments: tuple) -> None:
        value = await self._call_predict(arguments)
        await self._send(self._output("result", call_id, value, source="predict"))

    async def _stream_body(self, call_id: int, arguments: tuple) -> None:
        loaded = self.loaded
        assert loaded is not None
        credit = self.credits[call_id]
        if not loaded.streams:  # one chunk: the whole answer of `predict`
            await credit.take()
            value = await self._call_predict(arguments)
            await self._send(self._output("chunk", call_id, value, source="predict"))
        elif loaded.stream_is_async:
            assert loaded.predict_stream is not None  # a model that streams has one
            generator = loaded.predict_stream(*arguments)
            try:
                while True:
                    await credit.take()
                    try:
                        value = await generator.__anext__()
                    except StopAsyncIteration:
                        break
                    await self._send(self._output("chunk", call_id, value))
            finally:
                await generator.aclose()
        else:
            stream = loaded.predict_stream
            assert stream is not None  # a model that streams has one
            iterator = await self._in_thread(lambda: iter(stream(*arguments)))
            try:
                while True:
                    await credit.take()
                    value = await self._in_thread(next, iterator, _END)
                    if value is _END:
                        break
                    await self._send(self._output("chunk", call_id, value))
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    await self._in_thread(close)
        await self._send(protocol.message("end", id=call_id))

    async def _call_predict(self, arguments: tuple) -> Any:
        assert self.loaded is not None
        if self.loaded.predict_is_async:
            return await self.loaded.predict(*arguments)
        return await self._in_thread(self.loaded.predict, *arguments)

    async def _in_thread(self, function: Callable, *args: Any) -> Any:
        """`function(*args)` on a thread of the pool. A thread cannot be stopped: a cancelled
        request still waits for the call to return (the gateway kills a worker that takes too
        long), so that a generator is never closed while it runs."""
        future = asyncio.get_running_loop().run_in_executor(
            self.pool, functools.partial(function, *args)
        )
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([future])
            raise

    # -- output

    def _output(self, kind: str, call_id: int, value: Any, *, source: str = "predict_stream"):
        """The frame for what the model gave; _Refused when it cannot be sent."""
        assert self.loaded is not None
        if isinstance(value, dict) and self.loaded.interface == interfaces.CHAT_MODEL:
            # Not a ChatModel's answer: the gateway refuses it, saying what it was. (An agent
            # may answer with a dict in its answer's format, as in MLflow: checked here.)
            data, type_name = value, protocol.PLAIN_DICT
        else:
            try:
                data, type_name = self.loaded.output(value, source=source)
            except InvalidModelOutput as error:
                raise _Refused(protocol.INVALID_OUTPUT, str(error)) from None
            except RecursionError:
                raise _Refused(
                    protocol.INVALID_OUTPUT,
                    f"the model's answer from {source} is nested too deeply to be sent as JSON",
                ) from None
            except Exception as error:  # the model changed the checks of its own process
                raise _Refused(
                    protocol.INVALID_OUTPUT,
                    f"{source} returned {type(value).__name__}, which could not be checked: "
                    f"{type(error).__name__}",
                ) from None
        # Written as JSON here, strictly: orjson would write a NaN as null and a datetime or a
        # UUID as a string, so the gateway could not tell. A lone surrogate stays (escaped): the
        # gateway refuses it where the client would see it, naming that field.
        try:
            value_json = strict_json.dumps_json_text(data)
        except InvalidModelOutput as error:
            raise _Refused(protocol.INVALID_OUTPUT, str(error)) from None
        message = protocol.message(kind, id=call_id, type=type_name, value=protocol.Raw(value_json))
        try:
            return protocol.encode(message, self.max_frame)
        except protocol.FrameTooLarge as error:
            raise _Refused(
                protocol.TOO_LARGE, f"the answer of {source} is too large: {error}"
            ) from None

    async def _fail(
        self, call_id: int, error: str, message: str, *, traceback: str = "", **extra: Any
    ) -> None:
        await self._send(
            protocol.message(
                "error", id=call_id, error=error, message=message, traceback=traceback, **extra
            )
        )

    async def _send(self, message: dict[str, Any] | bytes) -> None:
        """Queue a frame; the frames queued in one turn of the loop go out in one write (many
        streams' chunks, one system call)."""
        if isinstance(message, dict):
            message = protocol.encode(message, self.max_frame)
        assert self.writer is not None
        self._outbox.append(message)
        if len(self._outbox) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        with contextlib.suppress(OSError):  # the gateway is gone: the reader ends this process
            await self.writer.drain()

    def _flush(self) -> None:
        frames, self._outbox = self._outbox, []
        if not frames:
            return
        assert self.writer is not None
        with contextlib.suppress(OSError):
            self.writer.write(b"".join(frames))

    def _send_soon(self, message: dict[str, Any]) -> None:
        asyncio.get_running_loop().create_task(self._send(message))


class _Refused(Exception):
    """An answer the worker will not send (protocol.INVALID_OUTPUT or TOO_LARGE)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def _traceback_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _read_only(folder: Path) -> None:
    """The version's own files: 0444, folders 0555 (once loaded; best effort)."""
    for root, folders, files in os.walk(folder, topdown=False):
        for name in files:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o444)
        for name in folders:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o555)


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the gateway dies (and exit now if it already has)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _confine(args: argparse.Namespace) -> None:
    """Landlock, before any model code is unpickled (and before any thread exists): read-only
    Python, its packages, chatmodels and the system's folders; read-write only this version's
    folder (its package, its artifacts) and the worker's private temporary folder (its cwd)."""
    python = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    python.add(os.path.dirname(os.path.realpath(sys.executable)))
    python.update(os.path.realpath(p) for p in sysconfig.get_paths().values())
    python.update(os.path.realpath(p) for p in site.getsitepackages())
    package = os.path.dirname(os.path.realpath(packaging.__file__))
    system = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/sys"]
    # Of /proc, only its own process and the machine's figures: not the gateway's environment.
    system += ["/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/loadavg"]
    system += ["/dev/urandom", "/dev/random", "/dev/zero"]
    system.append(os.path.dirname(os.path.realpath("/etc/resolv.conf")))
    read_only = [*sorted(python), package, *filter(None, [args.lib_dir]), *system]
    read_write = [os.getcwd(), args.work_dir, "/dev/null", *args.path]
    if not landlock.restrict(read_only=read_only, read_write=read_write):
        print(
            "chatmodels worker: this kernel has no Landlock; file access is not confined",
            file=sys.stderr,
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chatmodels.serving.workers.worker")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the gateway")
    parser.add_argument("--parent", type=int, required=True, help="the gateway's pid")
    parser.add_argument("--package", required=True, help="the version's package file")
    parser.add_argument("--digest", required=True, help="the package's sha256")
    parser.add_argument("--work-dir", required=True, help="where its artifacts are unpacked")
    parser.add_argument("--threads", type=int, default=32, help="threads for sync models")
    parser.add_argument("--max-frame", type=int, default=protocol.DEFAULT_MAX_FRAME)
    parser.add_argument("--lib-dir", help="the folder on PYTHONPATH holding chatmodels")
    parser.add_argument(
        "--path", action="append", default=[], help="a folder the model may read and write"
    )
    parser.add_argument("--landlock", action="store_true", help="confine file access")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _log_to_stderr()
    _die_with_parent(args.parent)
    if args.landlock:
        _confine(args)
    sock = socket.socket(fileno=args.fd)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(Worker(args, sock).run())
    finally:
        # No clean-up of the loop or the pool: a model still running (stuck, or not yet at its
        # next yield) must not keep the process alive once the gateway has ended it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _log_to_stderr() -> None:
    """The worker's log records (its own and its model's) as JSON lines on stderr, which the
    gateway's log receives."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


if __name__ == "__main__":
    main()
