"""A model's worker settings (replicas, memory limit), from its row to its worker processes."""

from __future__ import annotations

import threading

import pytest

from chatmodels.exceptions import ModelCrashed
from chatmodels.models import RegisteredModel
from chatmodels.selectors import ResolvedVersion, resolve_version
from chatmodels.serving import eventloop, runtime
from chatmodels.serving.workers import client as workers
from chatmodels.types import ChatRequest
from tests.api.calls import error_of, post
from tests.helpers import chat, make_key, register
from tests.live import poll
from tests.worker_models import HogModel, SlowLoadModel, SyncModel

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def invoke(name: str, text: str, version: ResolvedVersion | None = None) -> str:
    """An answer of `runtime.invoke` (as a chat request runs it, minus HTTP)."""
    version = version or resolve_version(name=name)
    request = ChatRequest.from_dict(chat(text))
    answer = eventloop.run(runtime.invoke(version, request, served_name=name))
    return answer["choices"][0]["message"]["content"]


def test_a_models_replicas_are_its_worker_processes():
    register(name="twins", model=SyncModel(), worker_replicas=2)
    version = resolve_version(name="twins")  # threads have no test database
    answers: list[str] = []
    requests = [
        threading.Thread(target=lambda: answers.append(invoke("twins", "sleep 0.5", version)))
        for _ in range(2)
    ]
    for request in requests:
        request.start()
    for request in requests:
        request.join(30)

    assert answers == ["sleep 0.5"] * 2
    running = workers.snapshot()
    assert len({w.pid for w in running}) == 2
    assert {(w.model_name, w.version) for w in running} == {("twins", 1)}


def test_fewer_replicas_retire_the_idle_extra_worker_and_more_start_when_needed():
    register(name="twins", model=SyncModel(), worker_replicas=2)
    invoke("twins", "hello")
    assert poll(lambda: len(workers.snapshot()) == 2, until=bool, timeout=10)

    RegisteredModel.objects.filter(name="twins").update(worker_replicas=1)
    invoke("twins", "hello")

    assert poll(lambda: len(workers.snapshot()) == 1, until=bool, timeout=15)
    RegisteredModel.objects.filter(name="twins").update(worker_replicas=3)
    version = resolve_version(name="twins")
    busy = threading.Thread(target=invoke, args=("twins", "sleep 1", version))
    busy.start()
    assert poll(lambda: workers.snapshot()[0].in_flight == 1, until=bool, timeout=15)
    invoke("twins", "hello")  # its one worker is busy: the missing replicas start
    busy.join(10)
    assert poll(lambda: len(workers.snapshot()) == 3, until=bool, timeout=10)


def test_a_replica_still_loading_when_the_count_is_lowered_retires_without_failing_the_model():
    register(name="slow", model=SlowLoadModel(), worker_replicas=2)
    answers: list[str] = []
    version = resolve_version(name="slow")
    first = threading.Thread(target=lambda: answers.append(invoke("slow", "a", version)))
    first.start()
    assert poll(lambda: len(workers.snapshot()) == 2, until=bool, timeout=10)

    RegisteredModel.objects.filter(name="slow").update(worker_replicas=1)
    version = resolve_version(name="slow")
    second = threading.Thread(target=lambda: answers.append(invoke("slow", "b", version)))
    second.start()
    first.join(30)
    second.join(30)

    assert sorted(answers) == ["a", "b"]
    assert invoke("slow", "c") == "c"
    assert poll(lambda: len(workers.snapshot()) == 1, until=bool, timeout=10)


def test_a_worker_over_its_models_memory_limit_fails_its_request_as_model_crashed(client):
    register(name="hog", model=HogModel(), worker_memory_mb=120)
    raw_key = make_key()[1]

    error = error_of(post(client, "/api/models/hog/invocations", key=raw_key), 502)

    assert error["code"] == "model_crashed"
    assert error["message"] == "model hog exceeded its memory limit (120 MB) and was stopped"


def test_a_memory_limit_set_on_the_model_reaches_its_running_worker():
    register(name="small", model=SyncModel())
    pid = int(invoke("small", "pid"))

    RegisteredModel.objects.filter(name="small").update(worker_memory_mb=1)

    with pytest.raises(ModelCrashed, match=r"exceeded its memory limit \(1 MB\)"):
        invoke("small", "sleep 3")
    assert pid not in {w.pid for w in workers.snapshot()}
