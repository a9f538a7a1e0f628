"""Model workers: real worker processes, started, crashed, hung, cancelled and stopped."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import threading
import time
from pathlib import Path

import pytest

import chatmodels.packaging
from chatmodels.exceptions import (
    InvalidModelOutput,
    ModelCrashed,
    ModelLoadError,
    ModelRaised,
    ModelTimeout,
    ModelUnavailable,
)
from chatmodels.packaging import build_package
from chatmodels.serving import eventloop
from chatmodels.serving.workers import client, landlock
from chatmodels.serving.workers.client import WorkerSpec
from chatmodels.serving.workers.worker import rss_bytes
from chatmodels.signature import DEFAULT_INPUT_EXAMPLE, chat_signature
from tests import sample_models, worker_models
from tests.live import poll

pytestmark = pytest.mark.slow


@functools.cache
def _built(cls):
    return build_package(cls(), input_example=DEFAULT_INPUT_EXAMPLE, signature=chat_signature())


def spec(cls, version_id: int, **options) -> WorkerSpec:
    built = _built(cls)
    return WorkerSpec(
        version_id=version_id,
        digest=built.digest,
        model_name=cls.__name__,
        version=1,
        served_name=cls.__name__,
        package=lambda: built.data,
        **options,
    )


def chat(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


def run(coroutine):
    return eventloop.run(coroutine, 30)


def predict(worker_spec: WorkerSpec, text: str, *, timeout: float | None = 10) -> str:
    answer = run(client.predict(worker_spec, chat(text), timeout=timeout))
    return answer["choices"][0]["message"]["content"]


def collect(worker_spec: WorkerSpec, text: str) -> list[dict]:
    async def take_all():
        return [chunk async for chunk in client.stream(worker_spec, chat(text), timeout=10)]

    return run(take_all())


def worker_children() -> set[int]:
    """Worker processes this process started that still exist."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                parent = int(stat.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and b"chatmodels.serving.workers.worker" in command:
            found.add(int(name))
    return found


@pytest.fixture(autouse=True)
def _workers_stopped():
    """Every test's workers are gone after it: none outlives the gateway's shutdown."""
    yield
    client.shutdown()
    assert poll(lambda: not worker_children(), until=bool, timeout=15)


def test_sync_and_async_predict_run_in_worker_processes_without_django():
    sync, async_ = spec(worker_models.SyncModel, 1), spec(worker_models.AsyncModel, 2)

    assert predict(sync, "hello") == "hello"
    assert predict(async_, "hi there") == "hi there"
    assert int(predict(sync, "pid")) != os.getpid()
    assert predict(sync, "django") == "False"


def test_streams_sync_and_async_arrive_in_order_past_the_credit():
    words = " ".join(f"w{i}" for i in range(20))  # more chunks than the stream's credit

    for cls, version_id in (
        (worker_models.SyncStreamModel, 1),
        (worker_models.AsyncStreamModel, 2),
    ):
        chunks = collect(spec(cls, version_id), words)

        assert [c["choices"][0]["delta"]["content"] for c in chunks] == words.split()
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_a_model_without_predict_stream_streams_its_whole_answer_once():
    worker_spec = spec(worker_models.SyncModel, 1)

    async def take():
        chunks = client.stream(worker_spec, chat("all at once"), timeout=10)
        items = [item async for item in chunks]
        return chunks.streams, items

    streams, items = run(take())

    assert streams is False
    assert [item["choices"][0]["message"]["content"] for item in items] == ["all at once"]


def test_a_crash_fails_only_that_workers_requests_and_the_model_starts_again():
    crashing, other = spec(worker_models.CrashingModel, 1), spec(worker_models.SyncModel, 2)
    first_pid = int(predict(crashing, "pid"))
    predict(other, "warm")

    async def together():
        return await asyncio.gather(
            client.predict(crashing, chat("exit later"), timeout=10),
            client.predict(crashing, chat("wait"), timeout=10),
            client.predict(other, chat("sleep 0.6"), timeout=10),
            return_exceptions=True,
        )

    exiting, waiting, unrelated = run(together())

    for failure in (exiting, waiting):
        assert isinstance(failure, ModelCrashed)
        assert str(failure) == "model CrashingModel crashed while answering"
        assert failure.status_code == 502 and failure.code == "model_crashed"
    assert unrelated["choices"][0]["message"]["content"] == "sleep 0.6"
    second_pid = int(predict(crashing, "pid"))  # started again (after a backoff)
    assert second_pid != first_pid
    [info] = [w for w in client.snapshot() if w.model_name == "CrashingModel"]
    assert info.restarts == 1 and info.pid == second_pid


def crash_loop(settings, *, crashes: int) -> WorkerSpec:
    """CrashingModel (version id 1) crashed `crashes` times, the crash limit: unavailable."""
    settings.CHATMODELS_WORKER_CRASH_LIMIT = crashes
    crashing = spec(worker_models.CrashingModel, 1)
    for _ in range(crashes):
        with pytest.raises(ModelCrashed):
            predict(crashing, "exit")
    return crashing


def test_a_crash_loop_makes_the_model_unavailable_until_it_is_restarted(settings):
    crashing = crash_loop(settings, crashes=3)

    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as caught:
        predict(crashing, "pid")

    assert time.monotonic() - started < 0.5
    assert caught.value.status_code == 503 and caught.value.code == "model_unavailable"
    assert "CrashingModel" in str(caught.value)
    assert not worker_children() and client.snapshot() == []
    assert run(client.restart("CrashingModel")) == 1
    assert int(predict(crashing, "pid")) > 0


def test_a_hung_sync_model_times_out_and_its_worker_is_replaced(settings):
    settings.CHATMODELS_WORKER_GRACE_SECONDS = 0.5
    hung = spec(worker_models.HungModel, 1)
    first_pid = int(predict(hung, "pid"))
    threads = threading.active_count()

    started = time.monotonic()
    with pytest.raises(ModelTimeout, match=r"model HungModel did not answer within 0\.5 s"):
        predict(hung, "hang", timeout=0.5)

    assert time.monotonic() - started < 1.0
    assert poll(lambda: first_pid not in worker_children(), until=bool, timeout=15)
    assert int(predict(hung, "pid")) != first_pid
    assert threading.active_count() == threads


def test_cancelling_a_request_cancels_the_async_model():
    async_ = spec(worker_models.AsyncModel, 1)
    predict(async_, "warm")
    pending = eventloop.submit(client.predict(async_, chat("sleep"), timeout=None))
    assert poll(lambda: predict(async_, "sleeping?") == "True", until=bool, timeout=15)

    pending.cancel()

    assert poll(lambda: predict(async_, "cancelled?") == "True", until=bool, timeout=15)
    assert client.snapshot()[0].in_flight == 0


def test_a_worker_sees_only_allowed_environment_variables(settings, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "gateway-secret")
    monkeypatch.setenv("DATABASE_URL", "postgres://user:password@db/chat")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("UPSTREAM_API_KEY", "for-the-model")
    monkeypatch.setenv("UNLISTED", "not for the model")
    settings.CHATMODELS_WORKER_ENV = ["UPSTREAM_API_KEY", "SECRET_KEY", "AWS_SECRET_ACCESS_KEY"]

    seen = json.loads(predict(spec(worker_models.SyncModel, 1), "env"))

    assert seen["UPSTREAM_API_KEY"] == "for-the-model"
    for name in ("SECRET_KEY", "DATABASE_URL", "AWS_SECRET_ACCESS_KEY", "UNLISTED"):
        assert name not in seen
    assert "PATH" in seen


@pytest.mark.skipif(landlock.abi_version() < 1, reason="the kernel has no Landlock")
def test_landlock_confines_a_workers_files(tmp_path):
    secret = tmp_path / "gateway-secret.txt"
    secret.write_text("SECRET_KEY=gateway-secret")
    other = spec(worker_models.SyncModel, 2)
    predict(other, "another model's package is on disk")
    [other_package] = (tmp_path / "cache" / "workers" / "models").glob("*/package.zip")
    probe = spec(worker_models.ProbeModel, 1)

    assert predict(probe, "read /etc/hostname") in ("ok", "FileNotFoundError")
    assert predict(probe, f"read {chatmodels.packaging.__file__}") == "ok"
    assert predict(probe, "write") == "ok"
    assert predict(probe, f"read {secret}") == "PermissionError"
    assert predict(probe, f"read {other_package}") == "PermissionError"
    assert predict(probe, f"read {Path(chatmodels.__file__).parents[1] / 'pyproject.toml'}") == (
        "PermissionError"
    )
    # Its own process's /proc, not the gateway's: the gateway's environment holds its secrets.
    assert predict(probe, "read /proc/self/status") == "ok"
    assert predict(probe, f"read /proc/{os.getpid()}/environ") == "PermissionError"


@pytest.mark.skipif(landlock.abi_version() < 1, reason="the kernel has no Landlock")
def test_a_folder_in_worker_paths_is_open_to_models(tmp_path, settings):
    shared = tmp_path / "weights"
    shared.mkdir()
    (shared / "w.bin").write_text("weights")
    probe = spec(worker_models.ProbeModel, 1)
    assert predict(probe, f"read {shared / 'w.bin'}") == "PermissionError"

    settings.CHATMODELS_WORKER_PATHS = [str(shared)]
    client.shutdown()  # a worker started from now on gets the folder

    assert predict(probe, f"read {shared / 'w.bin'}") == "ok"


def test_a_model_patching_chatmodels_changes_nothing_outside_its_worker():
    check_response = chatmodels.packaging.check_response
    patching = spec(worker_models.PatchingModel, 1)
    other = spec(sample_models.DictOutputModel, 2)

    for _ in range(2):  # the second request runs after its own patch
        with pytest.raises(InvalidModelOutput, match="predict returned dict, not ChatResponse"):
            predict(patching, "patch")
    with pytest.raises(InvalidModelOutput, match="predict returned dict, not ChatResponse"):
        predict(other, "hello")

    assert chatmodels.packaging.check_response is check_response


def test_a_stream_nobody_reads_holds_the_model_back():
    flood = spec(worker_models.FloodModel, 1)

    async def read_one_then_stall():
        chunks = client.stream(flood, chat("go"), timeout=10)
        first = await chunks.__anext__()
        await asyncio.sleep(1.5)  # the model may produce only what its credit allows
        return chunks, first

    chunks, first = run(read_one_then_stall())
    try:
        assert len(first["choices"][0]["delta"]["content"]) == 1024 * 1024
        [info] = client.snapshot()
        assert info.in_flight == 1
        assert rss_bytes(info.pid) < 150 * 1024 * 1024
        yielded = int(predict(flood, "count"))  # the same worker: replicas=1
        assert 1 < yielded <= 10  # the first chunk, the credit, the one it waits to send
    finally:
        run(chunks.aclose())
    assert poll(lambda: client.snapshot()[0].in_flight == 0, until=bool, timeout=15)


def test_a_worker_over_its_memory_limit_is_killed():
    hog = spec(worker_models.HogModel, 1, memory_limit_mb=120)

    with pytest.raises(ModelCrashed) as caught:
        predict(hog, "fill")

    assert str(caught.value) == (
        "model HogModel exceeded its memory limit (120 MB) and was stopped"
    )
    assert not worker_children()


def test_idle_workers_are_stopped(settings):
    settings.CHATMODELS_WORKER_IDLE_SECONDS = 0.3
    worker_spec = spec(worker_models.SyncModel, 1)
    pid = int(predict(worker_spec, "pid"))

    assert poll(
        lambda: pid not in worker_children() and not client.snapshot(), until=bool, timeout=15
    )
    assert predict(worker_spec, "back") == "back"


def test_snapshot_shows_each_live_worker():
    worker_spec = spec(worker_models.SyncModel, 7, replicas=2)
    pid = int(predict(worker_spec, "pid"))  # answered by the first replica ready
    assert poll(
        lambda: [w.state for w in client.snapshot()] == ["ready"] * 2, until=bool, timeout=15
    )
    pending = eventloop.submit(client.predict(worker_spec, chat("sleep 1"), timeout=10))

    assert poll(lambda: sum(w.in_flight for w in client.snapshot()) == 1, until=bool, timeout=15)
    infos = client.snapshot()
    pending.result(5)

    assert len(infos) == 2  # both replicas were started on first use
    assert pid in {info.pid for info in infos}
    for info in infos:
        assert (info.model_name, info.version, info.version_id) == ("SyncModel", 1, 7)
        assert info.state == "ready" and info.restarts == 0
        assert info.started_at.tzinfo is not None
    assert poll(lambda: all(w.rss_bytes for w in client.snapshot()), until=bool, timeout=15)


def test_a_version_that_cannot_load_fails_at_once_until_retried(caplog):
    failing = spec(worker_models.LoadFailModel, 1)

    with pytest.raises(ModelLoadError, match="model version LoadFailModel/1 could not be loaded"):
        predict(failing, "hello")
    started = time.monotonic()
    with pytest.raises(ModelLoadError):
        predict(failing, "hello")

    assert time.monotonic() - started < 0.2  # remembered, not loaded again
    assert "weights.bin is missing" in caplog.text


def _run_once(cls) -> dict:
    built = _built(cls)
    return client.run_once(built.data, built.digest, DEFAULT_INPUT_EXAMPLE, timeout=10)


def test_run_once_answers_and_reports_registration_errors():
    assert _run_once(sample_models.TriggerModel)["choices"][0]["message"]["content"] == "Hello!"
    with pytest.raises(ModelRaised) as raised:
        _run_once(sample_models.RaisingModel)
    assert str(raised.value).startswith("predict raised ValueError: model exploded at")
    assert "sample_models.py:" in str(raised.value)
    with pytest.raises(InvalidModelOutput, match=r"predict returned dict, not ChatResponse: \{'"):
        _run_once(sample_models.DictOutputModel)
    with pytest.raises(InvalidModelOutput, match="predict returned str, not ChatResponse: 'hello'"):
        _run_once(sample_models.StringOutputModel)
    with pytest.raises(ModelRaised, match=r"load_context raised OSError: weights\.bin is missing"):
        _run_once(worker_models.LoadFailModel)
    assert not worker_children()


def test_shutdown_leaves_no_worker_process():
    predict(spec(worker_models.SyncModel, 1), "a")
    predict(spec(worker_models.AsyncModel, 2), "b")
    pids = {info.pid for info in client.snapshot()}
    assert len(pids) == 2

    assert set(client.shutdown()) == pids

    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with contextlib.suppress(Exception):
        assert client.snapshot() == []
