"""What the gateway calls to run a model in its workers.

    answer = await predict(spec, request, timeout=30)      # a checked chat.completion dict
    async with contextlib.aclosing(stream(spec, request, timeout=30)) as chunks:
        async for chunk in chunks: ...                     # checked dicts (None: keep-alive)
    answer = run_once(package_bytes, digest, request, timeout=30)   # blocking, throwaway worker
    host_board()                  # every live worker of this host's gateway processes
    request_restart("my-model")   # restart its workers in all of them, within about a second

All but `run_once`, `snapshot`, `shutdown` and the board's functions are coroutines for the
process's one event loop: a WSGI request thread runs them with `eventloop.run(...)` (a stream:
one `eventloop.run(chunks.__anext__())` per chunk), an async view awaits them. What a worker
sends is checked here (ChatResponse / ChatChunk, as `packaging.check_response` /
`check_chunk`), never trusted. A timeout, or the caller being cancelled (the client went away),
stops the request in its worker; a worker that does not stop it within
CHATMODELS_WORKER_GRACE_SECONDS (a few such periods while it keeps answering others) is killed.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from chatmodels import exceptions, interfaces, packaging
from chatmodels.exceptions import (
    ChatModelsError,
    InvalidModelOutput,
    InvalidRequest,
    ModelLoadError,
    ModelRaised,
    UpstreamFailed,
)
from chatmodels.serving import eventloop
from chatmodels.serving.workers import board, protocol
from chatmodels.serving.workers.board import Board, WorkerInfo
from chatmodels.serving.workers.supervisor import (
    STREAM_CREDIT,
    Call,
    Config,
    LoadFailed,
    Supervisor,
    WorkerProcess,
    WorkerSpec,
    private_dir,
    timed_out,
    write_package,
)
from chatmodels.types import ChatChunk, ChatResponse
from chatmodels.upstream import PASSED_THROUGH, short_text

__all__ = [
    "Board",
    "WorkerInfo",
    "WorkerSpec",
    "WorkerStream",
    "host_board",
    "predict",
    "request_restart",
    "restart",
    "run_once",
    "shutdown",
    "snapshot",
    "stream",
]

logger = logging.getLogger(__name__)

_supervisor: Supervisor | None = None
_supervisor_pid: int | None = None
_lock = threading.Lock()


def _get() -> Supervisor:
    """This process's supervisor, made on first use (and anew in a forked child)."""
    global _supervisor, _supervisor_pid
    with _lock:
        if _supervisor is None or _supervisor_pid != os.getpid():
            if _supervisor_pid is None:
                atexit.register(shutdown)
            _supervisor, _supervisor_pid = Supervisor(asyncio.get_running_loop()), os.getpid()
        return _supervisor


async def predict(spec: WorkerSpec, request: dict[str, Any], *, timeout: float | None) -> dict:
    """`predict` of `spec`'s version on `request` (a chat request dict): the checked
    ChatResponse as a dict. ModelTimeout after `timeout` seconds (None: no limit)."""
    call, deadline = await _get().open_call(spec, "predict", request, timeout=timeout)
    try:
        message = await call.next(deadline, timeout=timeout)
    except BaseException:
        call.abandon()
        raise
    if message is None:
        call.abandon()
        raise timed_out(spec.served_name, timeout)
    return _answer(message, served_name=spec.served_name)


def stream(
    spec: WorkerSpec,
    request: dict[str, Any],
    *,
    timeout: float | None,
    keepalive: float | None = None,
) -> WorkerStream:
    """`predict_stream` of `spec`'s version: see WorkerStream."""
    return WorkerStream(spec, request, timeout=timeout, keepalive=keepalive)


class WorkerStream(AsyncIterator[Any]):
    """The checked chunks of a stream, as dicts.

    A model with `predict_stream` gives ChatChunk dicts; one without gives a single ChatResponse
    dict (its whole answer): `streams` says which, once the first item is taken. With
    `keepalive`, None comes after that many seconds without a chunk. `timeout` bounds the wait
    for each chunk (ModelTimeout). `aclose()` (or the awaiting task being cancelled) stops the
    model in its worker. The worker sends at most STREAM_CREDIT chunks ahead of the consumer.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        request: dict[str, Any],
        *,
        timeout: float | None,
        keepalive: float | None,
    ) -> None:
        self.spec = spec
        self.streams: bool | None = None
        self._request = request
        self._timeout = timeout
        self._keepalive = keepalive
        self._call: Call | None = None
        self._taken = 0
        self._last = 0.0
        self._done = False
        self._failure: Exception | None = None

    async def __anext__(self) -> dict[str, Any] | None:
        if self._done:
            raise StopAsyncIteration
        try:
            return await self._next()
        except BaseException:
            await self.aclose()
            raise

    async def next_batch(self) -> list[dict[str, Any] | None]:
        """The next item (waiting for it as `__anext__` does), and every one that has already
        arrived after it: a caller on another thread takes a burst of chunks in one hand-off.
        An empty list: the stream is over. An error after some items is raised at the next
        call, so that the items before it are delivered first."""
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        batch: list[dict[str, Any] | None] = []
        try:
            while not self._done and (
                not batch
                or (batch[-1] is not None and self._call is not None and self._call.ready())
            ):
                batch.append(await self._next())
        except StopAsyncIteration:
            pass
        except BaseException as error:
            await self.aclose()
            if not batch or not isinstance(error, Exception):
                raise
            self._failure = error
        return batch

    async def _next(self) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        if self._call is None:
            self._call, _ = await _get().open_call(
                self.spec, "stream", self._request, timeout=self._timeout
            )
            self.streams = self._call.worker.streams
            self._last = loop.time()
        deadline = None if self._timeout is None else self._last + self._timeout
        wait_until = deadline
        if self._keepalive is not None:
            keepalive_at = loop.time() + self._keepalive
            wait_until = keepalive_at if deadline is None else min(deadline, keepalive_at)
        message = await self._call.next(wait_until, timeout=self._timeout)
        if message is None:
            if deadline is not None and loop.time() >= deadline:
                raise timed_out(self.spec.served_name, self._timeout)
            return None  # keep-alive
        self._last = loop.time()
        kind = message["kind"]
        if kind == "end":
            self._done = True
            raise StopAsyncIteration
        if kind == "chunk":
            self._taken += 1
            if self._taken >= STREAM_CREDIT // 2:
                self._call.send("credit", n=self._taken)
                self._taken = 0
            if not self.streams:
                return _answer(message, served_name=self.spec.served_name)
            return _chunk(message)
        self._done = True
        # A model without predict_stream answers a stream with predict: say so if it raises.
        _raise(message, served_name=self.spec.served_name, streaming=bool(self.streams))
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Stop the model (at once if async, at its next yield if sync). Idempotent."""
        self._done = True
        if self._call is not None:
            self._call.abandon()

    def __del__(self) -> None:
        call = self._call
        if call is not None and not call.ended:
            # Dropped without aclose(): stop the model all the same.
            loop = call.worker.exited.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(call.abandon)


def _current() -> Supervisor | None:
    """This process's supervisor if it has one (none is made)."""
    supervisor = _supervisor
    if supervisor is None or _supervisor_pid != os.getpid():
        return None
    return supervisor


def snapshot() -> list[WorkerInfo]:
    """The live workers of this process (safe from any thread)."""
    supervisor = _current()
    return [] if supervisor is None else supervisor.snapshot()


# ---------------------------------------------------------------------------------------------
# The host's board: every gateway process's workers, restarts for all of them


def _share_now() -> None:
    """This process's supervisor follows the restart requests and writes its board file now,
    not at its next tick (nothing when it runs no workers). Any thread but the loop's."""
    supervisor = _current()
    if supervisor is not None:

        async def share() -> None:
            supervisor.share(Config.current())

        eventloop.run(share(), 10)


def host_board() -> Board:
    """Every live worker of this host's gateway processes (this process's as of now), and the
    versions they answer as unavailable after a crash loop."""
    _share_now()
    return board.read_board(Config.current().directory)


def request_restart(model_name: str) -> int:
    """Restart `model_name`'s workers in every gateway process of this host (this one at once,
    the others at their next tick, within about a second: waited for, up to 2 s), forgetting
    its crashes. How many gateway processes were running it, or answering it as unavailable."""
    running = host_board()
    directory = Config.current().directory
    asked_at = board.request_restart(directory, model_name)
    _share_now()
    board.wait_until_followed(directory, asked_at)  # so what is shown next is after it
    return len(
        {w.gateway_pid for w in running.workers if w.model_name == model_name}
        | {u.gateway_pid for u in running.unavailable if u.model_name == model_name}
    )


async def restart(target: int | str) -> int:
    """Stop the workers of a version (its id) or of a model (its name) and forget its crashes
    and load failure: the next request starts them again. How many versions it matched."""
    supervisor = _get()
    supervisor.check_loop()
    return supervisor.restart(target)


def shutdown(timeout: float = 5.0) -> list[int]:
    """Kill every worker of this process and wait for them (at exit; any thread but the
    loop's). The pids that were running."""
    global _supervisor
    with _lock:
        supervisor, _supervisor = _supervisor, None
    if supervisor is None or _supervisor_pid != os.getpid():
        return []
    return supervisor.kill_all(timeout)


# ---------------------------------------------------------------------------------------------
# Registration: one predict in a throwaway worker


def run_once(
    package: bytes, digest: str, request: dict[str, Any], *, timeout: float | None
) -> dict[str, Any]:
    """Load `package` in a worker of its own, run `predict` once on `request`, stop the worker.

    Blocking (from any thread but the event loop's). Raises what registration reports: the
    package's own error when it does not load (PackageIntegrityError, ModelRaised "load_context
    raised … at file.py:N"), ModelRaised "predict raised … at file.py:N", InvalidModelOutput
    with a preview of what came back, ModelTimeout.
    """
    return eventloop.run(_run_once(package, digest, request, timeout), None)


async def _run_once(
    package: bytes, digest: str, request: dict[str, Any], timeout: float | None
) -> dict[str, Any]:
    config = Config.current()
    folder = Path(tempfile.mkdtemp(prefix="once-", dir=private_dir(config.directory)))
    spec = WorkerSpec(
        version_id=0, digest=digest, model_name="(registration)", version=0,
        served_name="(registration)", package=package,
    )  # fmt: skip
    worker = WorkerProcess(None, spec, config)
    started = time.monotonic()
    try:
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(None, write_package, folder, package)
        try:
            await asyncio.wait_for(worker.start(path, folder), timeout)
        except LoadFailed as failure:
            logger.info("the package did not load: %s\n%s", failure.message, failure.traceback)
            error_class = getattr(exceptions, failure.error, None)
            if isinstance(error_class, type) and issubclass(error_class, ChatModelsError):
                raise error_class(failure.message) from WorkerTraceback(failure.traceback)
            raise ModelLoadError(f"the model could not be loaded: {failure.message}") from None
        except asyncio.TimeoutError:
            raise timed_out("the model", timeout) from None
        call = worker.open_call(1, "the model")
        call.send("predict", request=request)
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        message = await call.next(None if left is None else loop.time() + left, timeout=timeout)
        if message is None:
            raise timed_out("the model", timeout)
        return _answer(message, served_name=None)
    finally:
        worker.stop("done")
        worker.kill("done")
        if worker.pid:
            await asyncio.shield(worker.exited)
        await asyncio.get_running_loop().run_in_executor(None, _remove, folder)


class WorkerTraceback(Exception):
    """The traceback of an error raised in a model worker, as the worker wrote it: the cause of
    the error registration reports, so that `--traceback` shows the author's frames."""

    def __str__(self) -> str:
        return f"\n{self.args[0]}" if self.args and self.args[0] else "(no traceback)"


def _remove(folder: Path) -> None:
    import shutil

    for root, folders, _files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(root, name), 0o700)  # the worker made them read-only
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Checking what a worker sent


def _answer(message: dict[str, Any], *, served_name: str | None) -> dict[str, Any]:
    """A `result` (or a non-streaming model's one chunk): a checked ChatResponse dict, or an
    agent's checked answer dict (ResponsesAgentResponse, ChatAgentResponse)."""
    if message["kind"] not in ("result", "chunk"):
        _raise(message, served_name=served_name, streaming=False)
    value = message["value"]
    agent = interfaces.BY_TYPE_NAME.get(message["type"])
    if agent is not None and not agent[1]:
        return agent[0].check_answer(value)
    if message["type"] == protocol.CHAT_RESPONSE:
        value = _rebuild(ChatResponse, value, "predict returned an invalid ChatResponse")
    return packaging.check_response(value).to_dict()


def _chunk(message: dict[str, Any]) -> dict[str, Any]:
    value = message["value"]
    agent = interfaces.BY_TYPE_NAME.get(message["type"])
    if agent is not None and agent[1]:
        return agent[0].check_chunk(value)
    if message["type"] == protocol.CHAT_CHUNK:
        value = _rebuild(ChatChunk, value, "predict_stream yielded an invalid ChatChunk")
    return packaging.check_chunk(value).to_dict()


def _rebuild(cls: type[ChatResponse] | type[ChatChunk], value: Any, problem: str) -> Any:
    try:
        return cls.from_dict(value)
    except ChatModelsError as error:
        raise InvalidModelOutput(f"{problem}: {error}") from None
    except RecursionError:
        raise InvalidModelOutput(f"{problem}: nested too deeply") from None


def _raise(message: dict[str, Any], *, served_name: str | None, streaming: bool) -> None:
    """The error a worker's `error` message stands for. `served_name` None: registration's
    wording (the author reads it, with the file and line of their code)."""
    error, text = message["error"], message["message"]
    if error == protocol.RAISED:
        if served_name is None:
            raise ModelRaised(f"predict raised {text}") from WorkerTraceback(message["traceback"])
        logger.error(
            "%s of %s raised %s\n%s",
            "predict_stream" if streaming else "predict",
            served_name,
            text,
            message["traceback"],
        )
        doing = "streaming" if streaming else "answering"
        raised = ModelRaised(f"model {served_name} raised an error while {doing}")
        raised.detail = text  # type: ignore[attr-defined]
        raise raised
    if error in (protocol.INVALID_OUTPUT, protocol.TOO_LARGE):
        raise InvalidModelOutput(text)
    if error == protocol.BAD_REQUEST:
        raise InvalidRequest(text)
    if error == protocol.UPSTREAM:
        raise _upstream_failed(message.get("upstream"), text)
    raise ChatModelsError(f"the model's worker answered {error}: {text}")


def _upstream_failed(detail: Any, text: str) -> UpstreamFailed:
    """The error a model's UpstreamError stands for; a worker's detail is checked, not trusted."""
    detail = detail if isinstance(detail, dict) else {}
    status = detail.get("status")
    if type(status) is not int or status not in PASSED_THROUGH:
        status = 502
    retry_after = detail.get("retry_after")
    if type(retry_after) is not int or not 0 <= retry_after <= 86_400:
        retry_after = None
    return UpstreamFailed(
        text if isinstance(text, str) else "the model's upstream failed",
        status=status,
        type=short_text(detail.get("type")),
        code=short_text(detail.get("code")),
        param=short_text(detail.get("param")),
        retry_after=retry_after,
    )
