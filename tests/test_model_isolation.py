"""Model code runs in worker processes of its own, through the real server: a model cannot read
the server's secrets, change how it authorizes, take it down, take other models' capacity or
slow other models down."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import psutil
import pytest

from tests.live import deployment, http, poll

pytestmark = pytest.mark.slow

MODELS = "tests/isolation_models.py"
COMPLETIONS = "/v1/chat/completions"


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    directory = tmp_path_factory.mktemp("isolation")
    with deployment(directory) as installation:
        for name, target in (
            ("echo", "Echo"),
            ("env-probe", "EnvironmentProbe"),
            ("patcher", "Patcher"),
            ("exiter", "Exiter"),
            ("hang", "Hang"),
            ("blocking-async", "BlockingAsync"),
            ("quick-async", "QuickAsync"),
            ("slow-cancel", "SlowToCancel"),
        ):
            installation.manage("register_model", name, f"{MODELS}:{target}")
        installation.key = installation.create_api_key("isolation")
        installation.echo_only = installation.create_api_key("echo-only", "--model", "echo")
        installation.server = installation.start_server(
            "server",
            workers=1,
            max_in_flight=16,
            CHATMODELS_RESERVED_SLOTS="4",
            CHATMODELS_QUEUE_TIMEOUT="1",
            CHATMODELS_MODEL_TIMEOUT="4",
            CHATMODELS_WORKER_GRACE_SECONDS="1",
        )
        yield installation


def chat(installation, model: str, text: str = "hi", *, key: str | None = None, timeout=30):
    return http(
        "POST",
        installation.server + COMPLETIONS,
        body={"model": model, "messages": [{"role": "user", "content": text}]},
        key=key or installation.key,
        timeout=timeout,
    )


def answer(reply) -> str:
    assert reply.status == 200, reply.body
    return reply.body["choices"][0]["message"]["content"]


def server_process(installation) -> psutil.Process:
    """The server's worker process (granian's child), which owns the model workers."""
    [process] = [p for p in installation.processes if "server" in p.name]
    children = psutil.Process(process.popen.pid).children()
    return next(c for c in children if "chatmodels.serving.workers" not in " ".join(c.cmdline()))


def model_workers(installation) -> list[psutil.Process]:
    return [
        child
        for child in server_process(installation).children()
        if "chatmodels.serving.workers.worker" in " ".join(child.cmdline())
    ]


def test_a_model_sees_no_secret_of_the_server(installation):
    # Files it must not read: another model's stored package, and the SQLite database (when the
    # installation uses one; PostgreSQL's needs credentials the model does not have).
    secrets = [str(next((installation.directory / "shared-packages").rglob("*.zip")))]
    if installation.database_url.startswith("sqlite"):
        secrets.append(urlsplit(installation.database_url).path)
    reply = chat(installation, "env-probe", "read " + " ".join(secrets))

    seen = json.loads(answer(reply))
    assert seen == {
        "SECRET_KEY": False,
        "DATABASE_URL": False,
        **dict.fromkeys(secrets, "PermissionError"),
    }


def test_a_model_patching_chatmodels_changes_nothing_for_other_requests(installation):
    assert answer(chat(installation, "patcher")) == (
        "could not import the gateway's code: ImproperlyConfigured"
    )

    # The key limited to `echo` is still refused `quick-async`, by the server's own code.
    refused = chat(installation, "quick-async", key=installation.echo_only)
    assert refused.status == 404 or refused.status == 403, refused.body
    assert answer(chat(installation, "echo", "still", key=installation.echo_only)) == "echo: still"


def test_a_model_that_exits_on_every_call_leaves_the_server_up(installation):
    statuses = [chat(installation, "exiter").status for _ in range(50)]

    codes = {chat(installation, "exiter").body["error"]["code"]}
    # Each crash fails its own request (502), the next waits for the restart's back-off (a 504
    # when that is past this server's 4 s model timeout); then the crash loop: unavailable (503)
    # at once, and no new process.
    assert statuses[0] == 502
    assert statuses.count(502) >= 3
    assert set(statuses) <= {502, 503, 504}
    assert statuses[-40:] == [503] * 40
    assert codes == {"model_unavailable"}
    assert http("GET", installation.server + "/health").status == 200
    assert answer(chat(installation, "echo", "after")) == "echo: after"


def test_a_hung_model_cannot_take_other_models_capacity(installation):
    answer(chat(installation, "echo", "warm"))  # its worker started before
    baseline_threads = server_process(installation).num_threads()
    baseline_memory = server_process(installation).memory_info().rss
    before = _pids(installation)
    with ThreadPoolExecutor(max_workers=24) as pool:
        # 20 callers of a model that never answers, who give up after 1 s.
        sent = time.monotonic()
        hung = [pool.submit(chat, installation, "hang", timeout=1) for _ in range(20)]
        time.sleep(0.5)
        started = time.monotonic()
        others = [answer(chat(installation, "echo", f"#{i}")) for i in range(10)]
        took = time.monotonic() - started
        hung_workers = _pids(installation) - before
        for future in hung:
            with pytest.raises(OSError):  # the client timed out
                future.result()

    assert others == [f"echo: #{i}" for i in range(10)]
    assert took < 5
    # The model timeout (4 s) ends the hung requests; their worker, which ignores it, is killed
    # after the grace period (1 s) and nothing of them is left.
    time.sleep(max(0.0, sent + 4 + 1 + 2 - time.monotonic()))
    assert hung_workers
    assert not _alive(hung_workers)
    # No thread outlives its request (a request waiting on its model is a coroutine, not a
    # thread), and no memory.
    assert server_process(installation).num_threads() <= baseline_threads + 2
    assert server_process(installation).memory_info().rss < baseline_memory + 20 * 2**20
    started = time.monotonic()
    assert chat(installation, "hang", timeout=10).status == 504
    assert 3.5 < time.monotonic() - started < 8


def test_a_worker_slow_to_end_a_cancelled_request_is_not_killed_while_it_answers(installation):
    before = _pids(installation)
    assert answer(chat(installation, "slow-cancel")) == "quick"  # its worker started
    [worker] = _pids(installation) - before
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The caller gives up after 0.5 s; the model then takes 2.5 s to end the request, more
        # than the grace period (1 s), while its worker answers other requests.
        waiting = pool.submit(chat, installation, "slow-cancel", "wait", timeout=0.5)
        answers = _answers_for(installation, "slow-cancel", seconds=4)
        with pytest.raises(OSError):  # the client timed out
            waiting.result()

    assert answers == ["quick"] * len(answers)
    assert worker in _pids(installation)

    # A request it never ends gets it killed all the same, a few grace periods later.
    with ThreadPoolExecutor(max_workers=1) as pool:
        stuck = pool.submit(chat, installation, "slow-cancel", "stuck", timeout=0.5)
        with pytest.raises(OSError):
            stuck.result()
    gone = poll(
        lambda: (_answers_for(installation, "slow-cancel", seconds=0.5), _pids(installation)),
        until=lambda seen: worker not in seen[1],
        timeout=20,
    )
    assert worker not in gone[1]


def _answers_for(installation, model: str, *, seconds: float) -> list[str]:
    """Calls to `model`, one after another for `seconds`: each answer's text, or its status."""
    answers = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        reply = chat(installation, model)
        ok = reply.status == 200
        answers.append(reply.body["choices"][0]["message"]["content"] if ok else str(reply.status))
    return answers


def _pids(installation) -> set[int]:
    return {p.pid for p in model_workers(installation)}


def _alive(pids: set[int]) -> bool:
    return any(psutil.pid_exists(pid) for pid in pids)


def test_a_model_blocking_its_event_loop_does_not_slow_another(installation):
    answer(chat(installation, "quick-async"))  # its worker started
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Two calls that block their worker's loop for 1.5 s each: 3 s in all.
        blocked = [pool.submit(chat, installation, "blocking-async") for _ in range(2)]
        time.sleep(0.3)
        latencies = []
        for _ in range(10):
            started = time.monotonic()
            answer(chat(installation, "quick-async"))
            latencies.append(time.monotonic() - started)
        assert [answer(future.result()) for future in blocked] == ["blocked"] * 2

    # Had they shared a process, a call would wait out a 1.5 s block; the bound leaves room for
    # a loaded machine.
    assert max(latencies) < 1.0, latencies
