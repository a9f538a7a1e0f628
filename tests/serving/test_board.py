"""The host's board of model workers: every gateway process's workers, and restart requests."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from chatmodels.exceptions import ModelUnavailable
from chatmodels.serving.workers import board, client
from chatmodels.serving.workers.supervisor import Config
from tests import worker_models
from tests.live import poll
from tests.serving.test_workers import crash_loop, predict, spec

pytestmark = pytest.mark.slow


def directory():
    return Config.current().directory


def board_files() -> list[str]:
    folder = directory() / board.BOARD
    return sorted(name for name in os.listdir(folder) if name.endswith(".json"))


def test_the_board_shows_this_processs_workers_and_forgets_them_at_shutdown():
    pid = int(predict(spec(worker_models.SyncModel, 4), "pid"))

    shown = client.host_board()

    assert shown.gateways == (os.getpid(),)
    [worker] = shown.workers
    assert (worker.gateway_pid, worker.pid) == (os.getpid(), pid)
    assert (worker.model_name, worker.version, worker.version_id) == ("SyncModel", 1, 4)
    assert worker.state == "ready" and worker.in_flight == 0 and worker.restarts == 0
    assert isinstance(worker.started_at, datetime.datetime) and worker.started_at.tzinfo
    assert board_files() == [f"{os.getpid()}.json"]

    client.shutdown()

    assert board_files() == []
    assert board.read_board(directory()) == board.Board()


# A gateway process of its own: it puts a worker on the board, says so, and waits to be killed.
GATEWAY = textwrap.dedent(
    """
    import datetime, sys, time
    from pathlib import Path
    from chatmodels.serving.workers.board import Presence, WorkerInfo

    now = datetime.datetime.now(datetime.timezone.utc)
    info = WorkerInfo("other", 2, 9, "ab" * 32, 4242, 50 * 2**20, 1, 0, "ready", now)
    Presence().publish(Path(sys.argv[1]), [info], [("broken", 1, 8)])
    print("published", flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def other():
    """Another gateway process, on the board (killed by the test, else after it)."""
    process = subprocess.Popen(
        [sys.executable, "-c", GATEWAY, str(directory())], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "published\n"
    yield process
    process.kill()
    process.wait(10)


def test_the_board_shows_other_gateways_and_drops_the_file_of_one_that_is_gone(other):
    predict(spec(worker_models.SyncModel, 1), "warm")
    try:
        shown = client.host_board()

        assert sorted(shown.gateways) == sorted([os.getpid(), other.pid])
        theirs = [w for w in shown.workers if w.gateway_pid == other.pid]
        assert [(w.model_name, w.version, w.pid, w.rss_bytes) for w in theirs] == [
            ("other", 2, 4242, 50 * 2**20)
        ]
        assert shown.unavailable == (board.UnavailableVersion(other.pid, "broken", 1, 8),)
    finally:
        other.kill()  # no chance to remove its file
        other.wait(10)
    assert f"{other.pid}.json" in board_files()

    shown = client.host_board()

    assert shown.gateways == (os.getpid(),)
    assert {w.gateway_pid for w in shown.workers} == {os.getpid()}
    assert shown.unavailable == ()
    assert board_files() == [f"{os.getpid()}.json"]


def test_a_restart_request_restarts_the_models_workers_at_the_next_tick():
    worker_spec = spec(worker_models.SyncModel, 1)
    first = int(predict(worker_spec, "pid"))
    predict(spec(worker_models.AsyncModel, 2), "another model")
    [kept] = [w.pid for w in client.snapshot() if w.model_name == "AsyncModel"]

    board.request_restart(directory(), "SyncModel")  # as another process would: a file

    assert poll(lambda: first not in {w.pid for w in client.snapshot()}, until=bool, timeout=15)
    assert int(predict(worker_spec, "pid")) != first
    assert kept in {w.pid for w in client.snapshot()}  # another model's worker is left alone


def test_a_restart_is_waited_for_until_every_gateway_has_looked_at_it(other):
    predict(spec(worker_models.SyncModel, 1), "warm")
    asked_at = board.request_restart(directory(), "SyncModel")

    # The other gateway never ticks: it is waited for, up to the timeout.
    assert not board.wait_until_followed(directory(), asked_at, timeout=0.3)
    other.kill()
    other.wait(10)
    assert board.wait_until_followed(directory(), asked_at, timeout=3)  # this process's tick
    assert time.time() - asked_at < 3


def test_a_restart_request_clears_a_crash_loop(settings):
    crashing = crash_loop(settings, crashes=2)
    with pytest.raises(ModelUnavailable):
        predict(crashing, "pid")
    assert client.host_board().unavailable == (
        board.UnavailableVersion(os.getpid(), "CrashingModel", 1, 1),
    )

    assert client.request_restart("CrashingModel") == 1  # this process: applied at once

    assert client.host_board().unavailable == ()
    assert int(predict(crashing, "pid")) > 0


def test_a_restart_asked_before_a_process_ran_workers_is_not_applied_to_them():
    board.request_restart(directory(), "SyncModel")
    worker_spec = spec(worker_models.SyncModel, 1)
    client.shutdown()  # the next use makes a new supervisor, after the request
    first = int(predict(worker_spec, "pid"))

    client.host_board()  # follows the requests now

    assert int(predict(worker_spec, "pid")) == first


def test_entries_another_release_wrote_differently_are_passed_over():
    folder = board.board_dir(directory())
    good = {"model_name": "m", "version": 1, "version_id": 2}
    data = {
        "pid": os.getpid(),
        "started": board.Presence().started,
        "workers": [{"model_name": "m", "flavour": "new"}, "not an entry"],
        "unavailable": [good, {**good, "since": 3}],
    }
    (folder / f"{os.getpid()}.json").write_text(json.dumps(data))

    shown = board.read_board(directory())

    assert shown.gateways == (os.getpid(),)
    assert shown.workers == ()
    assert shown.unavailable == (board.UnavailableVersion(os.getpid(), "m", 1, 2),)
